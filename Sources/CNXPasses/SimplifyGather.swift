import CNXGraph

/// Recognises a Gather that only re-reads a flattened tensor in its own order, and makes it the
/// Reshape it is. The dynamo exporter lowers the pooled `view` of timm's and torchvision's heads
/// this way: `Gather(Reshape(x, [-1]), Range(0, N) * C + arange(C) + 0)`.
///
/// The indices are followed symbolically: each int64 value built from Range(0, n, 1), constants,
/// Mul by a constant, Add and Unsqueeze is an affine function of its element's coordinates,
/// `index[i0, i1, ...] = a0 i0 + a1 i1 + ... + b`. When that function is exactly the row-major
/// position of the element (and the data is 1-D, gathered on axis 0), the Gather is a Reshape.
/// Anything else, including indices it cannot follow, is left alone.
public struct SimplifyGather: RepeatedRewrite {
    public let name = "simplify-gather"
    public let summary = "Gather with row-major affine indices over flattened data -> Reshape"

    public init() {}

    /// coefficient per axis of the value's shape, and the constant term.
    struct Affine { var coefficients: [Int]; var offset: Int }

    private func affine(_ value: String, _ index: GraphIndex, _ facts: [String: ValueFacts], depth: Int = 0) -> Affine? {
        guard depth < 32, let shape = facts[value]?.shape else { return nil }
        if let t = index.constant(value) {
            // A constant is affine when it equals a0 i0 + ... + b everywhere; fit it and check.
            guard t.dtype == .int64, t.count <= 1 << 16 else { return nil }
            let dims = t.shape, values = t.int64s.map { Int($0) }
            guard let b = values.first else { return nil }
            var strides = [Int](repeating: 1, count: dims.count)
            for k in stride(from: dims.count - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * dims[k + 1] }
            let coefficients = dims.indices.map { k in dims[k] > 1 ? values[strides[k]] - b : 0 }
            for (flat, v) in values.enumerated() {
                var rest = flat, expected = b
                for k in dims.indices { expected += coefficients[k] * (rest / strides[k]); rest %= strides[k] }
                if expected != v { return nil }
            }
            return Affine(coefficients: coefficients, offset: b)
        }
        guard let p = index.producer(value) else { return nil }
        let node = p.node
        switch node.op {
        case .range:
            guard index.scalar(node.inputs[0]) == 0, index.scalar(node.inputs[2]) == 1, shape.count == 1 else { return nil }
            return Affine(coefficients: [1], offset: 0)
        case .mul:
            guard let (x, c) = index.splitConstant(node), let k = index.constant(c), k.dtype == .int64, k.count == 1,
                let a = affine(x, index, facts, depth: depth + 1), a.coefficients.count == shape.count
            else { return nil }
            let m = Int(k.withUnsafeInt64s { $0[0] })
            return Affine(coefficients: a.coefficients.map { $0 * m }, offset: a.offset * m)
        case .add:
            guard let a = affine(node.inputs[0], index, facts, depth: depth + 1),
                let b = affine(node.inputs[1], index, facts, depth: depth + 1)
            else { return nil }
            // Align both to the broadcast result's rank; broadcast axes contribute nothing.
            func lift(_ f: Affine) -> [Int] { Array(repeating: 0, count: shape.count - f.coefficients.count) + f.coefficients }
            guard a.coefficients.count <= shape.count, b.coefficients.count <= shape.count else { return nil }
            return Affine(coefficients: zip(lift(a), lift(b)).map(+), offset: a.offset + b.offset)
        case .unsqueeze:
            guard let a = affine(node.inputs[0], index, facts, depth: depth + 1) else { return nil }
            let axes = node.inputs.count > 1 ? index.constant(node.inputs[1]).map { $0.int64s.map { Int($0) } } : node.ints("axes")
            guard let axes else { return nil }
            let rank = a.coefficients.count + axes.count
            let set = Set(axes.map { $0 < 0 ? $0 + rank : $0 })
            var it = a.coefficients.makeIterator()
            return Affine(coefficients: (0..<rank).map { set.contains($0) ? 0 : it.next() ?? 0 }, offset: a.offset)
        default:
            return nil
        }
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        guard let facts = try? ShapeInference.infer(g) else { return false }
        for (i, gather) in g.nodes.enumerated() where gather.op == .gather && (gather.int("axis") ?? 0) == 0 {
            guard let data = facts[gather.inputs[0]]?.shape, data.count == 1,
                let out = facts[gather.inputs[1]]?.shape, !out.isEmpty,
                let f = affine(gather.inputs[1], index, facts), f.offset == 0, f.coefficients.count == out.count
            else { continue }
            // Row-major strides of the index shape, over its non-unit axes; at most one symbolic.
            var stride = 1
            var ok = true
            var target: [Int64] = []
            var symbolic = 0
            for k in stride_(out.count) {
                switch out[k] {
                case .fixed(let d):
                    if d != 1 && f.coefficients[k] != stride { ok = false }
                    stride *= d
                default:
                    symbolic += 1
                    if f.coefficients[k] != stride { ok = false }
                    stride = -1
                }
                if !ok { break }
            }
            guard ok, symbolic <= 1 else { continue }
            // With a symbolic axis, it must be the outermost non-unit one (the stride check above
            // stops counting there), so -1 stands for it.
            if symbolic == 1, out.firstIndex(where: { $0.value == nil }) != out.firstIndex(where: { $0 != .fixed(1) }) { continue }
            target = out.map { Int64($0.value ?? -1) }
            // The data must hold exactly as many elements as the indices address.
            if let n = data[0].value, let total = out.reduce(Optional(1), { acc, d in acc.flatMap { a in d.value.map { a * $0 } } }),
                n != total
            {
                continue
            }
            let shapeName = g.freshName("\(gather.outputs[0]).shape")
            g.replace(
                [i], with: [Node(name: gather.name, op: .reshape, inputs: [gather.inputs[0], shapeName], outputs: gather.outputs)],
                adding: [shapeName: Tensor(int64s: target, shape: [target.count])])
            return true
        }
        return false
    }

    /// Axes from the innermost out.
    private func stride_(_ rank: Int) -> [Int] { Array((0..<rank).reversed()) }
}
