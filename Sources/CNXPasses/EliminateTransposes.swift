import CNXGraph

/// Runs the network channels-last by removing the NCHW/NHWC permutes the exporters put around
/// every LayerNorm and pointwise layer. Three rewrites, repeated until none applies:
///
/// - two transposes in a row compose into one, and vanish when the composition is the identity;
/// - a transpose moves below an elementwise op whose other operand is a constant (the constant
///   is permuted to match), or below a unary elementwise op, so it can meet its inverse;
/// - a binary elementwise op of two values transposed the same way becomes one transpose of the
///   op's result.
///
/// Moving a transpose never changes a value a graph output or a second reader sees: a transpose
/// moves only when its result has one reader.
public struct EliminateTransposes: RepeatedRewrite {
    public let name = "eliminate-transposes"
    public let summary = "cancel inverse permutes; move permutes below elementwise ops to meet them"

    public init() {}

    static let unary: Set<OpType> = [.gelu, .swish, .erf, .sqrt, .relu, .tanh, .sigmoid, .neg, .reciprocal]
    static let binary: Set<OpType> = [.add, .sub, .mul, .div, .pow]

    private func perm(_ n: Node) -> [Int]? { n.ints("perm") }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, t) in g.nodes.enumerated() where t.op == .transpose {
            guard let p = perm(t) else { continue }
            let out = t.outputs[0]
            // Transpose of a transpose.
            if let inner = index.producer(t.inputs[0], .transpose), let p1 = perm(inner.node), p1.count == p.count {
                let composed = p.map { p1[$0] }
                if composed == Array(0..<p.count) {
                    if index.graphOutputs.contains(out) { continue }
                    g.replace([i], with: [])
                    g.rewire(out, to: inner.node.inputs[0])
                } else {
                    g.replace(
                        [i],
                        with: [
                            Node(
                                name: t.name, op: .transpose, inputs: [inner.node.inputs[0]], outputs: [out],
                                attributes: ["perm": .ints(composed)])
                        ])
                }
                return true
            }
            guard let reader = index.soleConsumer(out) else { continue }
            let r = reader.node
            if Self.unary.contains(r.op), r.outputs.count == 1 {
                // U(T(x)) -> T(U(x))
                let moved = g.freshName("\(r.outputs[0]).pre_transpose")
                var u = r
                u.inputs[0] = t.inputs[0]
                u.outputs = [moved]
                g.replace(
                    [i, reader.index],
                    with: [u, Node(name: t.name, op: .transpose, inputs: [moved], outputs: r.outputs, attributes: t.attributes)])
                return true
            }
            guard Self.binary.contains(r.op), r.inputs.count == 2 else { continue }
            let slot = r.inputs[0] == out ? 0 : 1
            let otherName = r.inputs[1 - slot]
            if let c = index.constant(otherName), c.dtype == .float32, c.shape.count <= p.count {
                // B(T(x), c) -> T(B(x, c')), c' = c seen through the inverse permutation.
                let expanded = Array(repeating: 1, count: p.count - c.shape.count) + c.shape
                var inverse = [Int](repeating: 0, count: p.count)
                for (k, v) in p.enumerated() { inverse[v] = k }
                let permuted = permute(c.reshaped(expanded), inverse)
                let cName = g.freshName("\(otherName).permuted")
                let moved = g.freshName("\(r.outputs[0]).pre_transpose")
                var b = r
                b.inputs[slot] = t.inputs[0]
                b.inputs[1 - slot] = cName
                b.outputs = [moved]
                g.replace(
                    [i, reader.index],
                    with: [b, Node(name: t.name, op: .transpose, inputs: [moved], outputs: r.outputs, attributes: t.attributes)],
                    adding: [cName: permuted])
                return true
            }
            if let t2 = index.producer(otherName, .transpose), t2.index != i, perm(t2.node) == p,
                index.soleConsumer(otherName) != nil
            {
                // B(T(a), T(b)) -> T(B(a, b))
                let moved = g.freshName("\(r.outputs[0]).pre_transpose")
                var b = r
                b.inputs[slot] = t.inputs[0]
                b.inputs[1 - slot] = t2.node.inputs[0]
                b.outputs = [moved]
                g.replace(
                    [i, t2.index, reader.index],
                    with: [b, Node(name: t.name, op: .transpose, inputs: [moved], outputs: r.outputs, attributes: t.attributes)])
                return true
            }
        }
        return false
    }
}

/// A float tensor transposed by `perm` (output axis k is input axis perm[k]), in new memory.
func permute(_ t: Tensor, _ perm: [Int]) -> Tensor {
    let shape = perm.map { t.shape[$0] }
    var strides = [Int](repeating: 1, count: t.shape.count)
    for k in stride(from: t.shape.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * t.shape[k + 1] }
    let out = Tensor(zeros: t.dtype, shape: shape)
    let count = t.count
    var idx = [Int](repeating: 0, count: shape.count)
    t.withUnsafeFloats { src in
        out.withUnsafeMutableFloats { dst in
            for o in 0..<count {
                var from = 0
                for k in 0..<shape.count { from += idx[k] * strides[perm[k]] }
                dst[o] = src[from]
                var k = shape.count - 1
                while k >= 0 {
                    idx[k] += 1
                    if idx[k] < shape[k] { break }
                    idx[k] = 0
                    k -= 1
                }
            }
        }
    }
    return out
}
