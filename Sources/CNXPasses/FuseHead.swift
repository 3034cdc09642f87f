import CNXGraph

/// Fuses the classifier head: a global average pool of the last NCHW feature map, a LayerNorm
/// over channels and a Linear become one `cnx.Head` reading the map channels-last. Two spellings:
///
/// - `ReduceMean(x, H and W, keepdims 0) -> LayerNorm -> Linear` (the paper's reference code);
/// - `GlobalAveragePool(x)` or `ReduceMean(..., keepdims 1)`, then Transpose, LayerNorm,
///   Transpose back, then Flatten or a Reshape to [N, C], then Linear (timm, torchvision).
///
/// The LayerNorm's affine, if still there, is folded into the Linear.
public struct FuseHead: Pass {
    public let name = "fuse-head"
    public let summary = "global average pool -> LayerNorm -> Linear -> cnx.Head"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        repeatUntilStable(&graph) { g in fuseOne(&g) }
    }

    private func spatialMean(_ node: Node, _ index: GraphIndex) -> Bool? {
        if node.op == .globalAveragePool { return true }
        guard node.op == .reduceMean else { return nil }
        let axes: [Int]?
        if node.inputs.count > 1 { axes = index.constant(node.inputs[1]).flatMap { $0.dtype == .int64 ? $0.int64s.map { Int($0) } : nil } } else { axes = node.ints("axes") }
        guard let axes, Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3] else { return nil }
        return (node.int("keepdims") ?? 1) == 1
    }

    private func fuseOne(_ g: inout Graph) -> Bool {
        let index = GraphIndex(g)
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, pool) in g.nodes.enumerated() {
            guard let keep = spatialMean(pool, index), let shape = facts[pool.inputs[0]]?.shape, shape.count == 4,
                  let c = shape[1].value else { continue }
            var removed: Set<Int> = [i]
            var cursor = pool.outputs[0]
            if keep {
                guard let t = index.soleConsumer(cursor, .transpose), t.node.ints("perm") == [0, 2, 3, 1] else { continue }
                removed.insert(t.index)
                cursor = t.node.outputs[0]
            }
            guard let ln = index.soleConsumer(cursor, .layerNormalization), ln.node.inputs[0] == cursor,
                  (ln.node.int("axis") ?? -1) == -1, ln.node.inputs.count >= 2,
                  let gamma = index.constant(ln.node.inputs[1])?.vector(of: c) else { continue }
            let beta = ln.node.inputs.count > 2 && !ln.node.inputs[2].isEmpty ? index.constant(ln.node.inputs[2])?.vector(of: c) : [Float](repeating: 0, count: c)
            guard let beta else { continue }
            removed.insert(ln.index)
            cursor = ln.node.outputs[0]
            if keep {
                guard let back = index.soleConsumer(cursor, .transpose), back.node.ints("perm") == [0, 3, 1, 2],
                      let flat = index.soleConsumer(back.node.outputs[0]) else { continue }
                if flat.node.op == .flatten {
                    guard (flat.node.int("axis") ?? 1) == 1 else { continue }
                } else if flat.node.op == .reshape {
                    guard let target = index.constant(flat.node.inputs[1]), target.dtype == .int64, target.count == 2,
                          target.int64s[1] == Int64(c) || target.int64s[1] == -1,
                          target.int64s[0] == -1 || target.int64s[0] == 0 && flat.node.int("allowzero") != 1 || target.int64s[1] == Int64(c) else { continue }
                } else {
                    continue
                }
                removed.formUnion([back.index, flat.index])
                cursor = flat.node.outputs[0]
            }
            guard let linear = index.soleConsumer(cursor, .linear), linear.node.inputs[0] == cursor, linear.node.string("activation") == nil,
                  let w = index.constant(linear.node.inputs[1]), w.shape.count == 2, w.shape[0] == c else { continue }
            let n = w.shape[1]
            let bias = linear.node.inputs.count > 2 ? index.constant(linear.node.inputs[2])?.floats ?? [] : [Float](repeating: 0, count: n)
            guard bias.count == n else { continue }
            removed.insert(linear.index)
            let (newW, newB) = foldAffineIntoLinear(weight: w, bias: bias, gamma: gamma, beta: beta)
            let out = linear.node.outputs[0]
            let wName = g.freshName("\(out).head_weight"), bName = g.freshName("\(out).head_bias"), nhwc = g.freshName("\(pool.inputs[0]).nhwc")
            g.replace(removed, with: [
                Node(name: "\(pool.name).to_nhwc", op: .transpose, inputs: [pool.inputs[0]], outputs: [nhwc], attributes: ["perm": .ints([0, 2, 3, 1])]),
                Node(name: linear.node.name, op: .head, inputs: [nhwc, wName, bName], outputs: [out], attributes: ["epsilon": .float(ln.node.float("epsilon") ?? 1e-5)]),
            ], adding: [wName: newW, bName: newB])
            return true
        }
        return false
    }
}
