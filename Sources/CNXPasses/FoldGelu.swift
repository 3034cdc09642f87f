import CNXGraph

/// Folds GELU, written out as `0.5 x (1 + erf(x / sqrt 2))` (the legacy exporter's spelling) or
/// as the tanh approximation `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, into one `Gelu`
/// node (`approximate` = none or tanh). The product may be associated any way round; the
/// constants must be the formula's to float32 precision, and every intermediate must have no
/// other reader. The `Gelu` op itself is already in this form.
public struct FoldGelu: RepeatedRewrite {
    public let name = "fold-gelu"
    public let summary = "erf and tanh GELU chains -> Gelu"

    public init() {}

    /// The erf form's argument: x / sqrt 2 or x * (1 / sqrt 2). Returns x and the node index.
    private func erfArgument(_ value: String, _ index: GraphIndex) -> (x: String, node: Int)? {
        guard index.soleConsumer(value) != nil, let p = index.producer(value),
            let (x, c) = index.splitConstant(p.node)
        else { return nil }
        if p.node.op == .div, p.node.inputs[1] == c, close(index.scalar(c), 1.4142135) { return (x, p.index) }
        if p.node.op == .mul, close(index.scalar(c), 0.70710678) { return (x, p.index) }
        return nil
    }

    /// The tanh form's argument: sqrt(2/pi) * (x + 0.044715 * x^3). Returns x and the node indices.
    private func tanhArgument(_ value: String, _ index: GraphIndex) -> (x: String, nodes: [Int])? {
        guard index.soleConsumer(value) != nil, let scale = index.producer(value, .mul),
            let (w, c1) = index.splitConstant(scale.node), close(index.scalar(c1), 0.7978845608),
            index.soleConsumer(w) != nil, let sum = index.producer(w, .add)
        else { return nil }
        for (x, q) in [(sum.node.inputs[0], sum.node.inputs[1]), (sum.node.inputs[1], sum.node.inputs[0])] {
            guard index.soleConsumer(q) != nil, let qn = index.producer(q, .mul),
                let (p, c2) = index.splitConstant(qn.node), close(index.scalar(c2), 0.044715),
                index.soleConsumer(p) != nil, let cube = index.producer(p)
            else { continue }
            if cube.node.op == .pow, cube.node.inputs[0] == x, close(index.scalar(cube.node.inputs[1]), 3) {
                return (x, [scale.index, sum.index, qn.index, cube.index])
            }
            if cube.node.op == .mul, let sq = cube.node.inputs.firstIndex(where: { $0 != x }), cube.node.inputs.contains(x),
                index.soleConsumer(cube.node.inputs[sq]) != nil, let square = index.producer(cube.node.inputs[sq], .mul),
                square.node.inputs == [x, x]
            {
                return (x, [scale.index, sum.index, qn.index, cube.index, square.index])
            }
        }
        return nil
    }

    /// Given `a` = 1 + f(x), finds the product x * a * 0.5 in any association.
    private func halfProduct(_ a: String, x: String, _ index: GraphIndex) -> (out: String, nodes: [Int])? {
        guard let m = index.soleConsumer(a, .mul), let other = index.other(m.node, than: a) else { return nil }
        if other == x {
            // (x * a) * 0.5
            guard let half = index.soleConsumer(m.node.outputs[0], .mul), let (_, c) = index.splitConstant(half.node),
                close(index.scalar(c), 0.5)
            else { return nil }
            return (half.node.outputs[0], [m.index, half.index])
        }
        if close(index.scalar(other), 0.5) {
            // x * (a * 0.5)
            guard let outer = index.soleConsumer(m.node.outputs[0], .mul), index.other(outer.node, than: m.node.outputs[0]) == x else {
                return nil
            }
            return (outer.node.outputs[0], [m.index, outer.index])
        }
        // (x * 0.5) * a
        guard index.soleConsumer(other) != nil, let h = index.producer(other, .mul), let (hx, c) = index.splitConstant(h.node),
            hx == x, close(index.scalar(c), 0.5)
        else { return nil }
        return (m.node.outputs[0], [m.index, h.index])
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, f) in g.nodes.enumerated() where f.op == .erf || f.op == .tanh {
            let x: String, argNodes: [Int]
            if f.op == .erf {
                guard let arg = erfArgument(f.inputs[0], index) else { continue }
                (x, argNodes) = (arg.x, [arg.node])
            } else {
                guard let arg = tanhArgument(f.inputs[0], index) else { continue }
                (x, argNodes) = (arg.x, arg.nodes)
            }
            guard let plus = index.soleConsumer(f.outputs[0], .add), let one = index.other(plus.node, than: f.outputs[0]),
                close(index.scalar(one), 1), let product = halfProduct(plus.node.outputs[0], x: x, index)
            else { continue }
            let removed = Set([i, plus.index] + argNodes + product.nodes)
            let attrs: [String: Attribute] = ["approximate": .string(f.op == .erf ? "none" : "tanh")]
            g.replace(removed, with: [Node(name: f.name, op: .gelu, inputs: [x], outputs: [product.out], attributes: attrs)])
            return true
        }
        return false
    }
}
