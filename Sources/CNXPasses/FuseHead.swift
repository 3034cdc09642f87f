import CNXGraph
import CNXReference

/// Fuses the classifier head into one `cnx.Head` reading the last feature map channels-last:
/// a global average pool and a norm over channels (LayerNorm, RMSNorm or SimpleNorm), in either
/// order, then what follows of
///
///     Linear (classifier)                         timm, torchvision, transformers, the paper
///     Linear (hidden), activation, Linear          timm's MLP head (`head_hidden_size`)
///     Linear (hidden), activation                  the same without classifier (`num_classes=0`)
///     nothing                                      headless (`num_classes=0`): pooled, normed features
///
/// Pool then norm, as the exporters write it: `ReduceMean(x, H and W, keepdims 0) -> Norm`
/// (the paper's code, transformers), or `GlobalAveragePool(x)` / `ReduceMean(keepdims 1)`, then
/// Transpose, Norm, Transpose back (or Flatten first, then the norm), and Flatten or a Reshape
/// to [N, C]. Norm first (timm's `head_norm_first`): Transpose, Norm, Transpose back on the
/// map, then the pool. The norm's affine folds into the first Linear when there is one
/// (mean(gamma ⊙ n + beta) = gamma ⊙ mean(n) + beta, so the order does not matter); a headless
/// head keeps it.
public struct FuseHead: RepeatedRewrite {
    public let name = "fuse-head"
    public let summary = "global average pool + norm (either order) -> (Linear -> (act -> (Linear))) -> cnx.Head"

    public init() {}

    /// Whether `node` averages an NCHW map over H and W: nil if not, else whether it keeps dims.
    private func spatialMean(_ node: Node, _ index: GraphIndex) -> Bool? {
        if node.op == .globalAveragePool { return true }
        guard node.op == .reduceMean, let axes = FoldRMSNorm.axes(node, index, rank: 4), Set(axes) == [2, 3] else { return nil }
        return (node.int("keepdims") ?? 1) == 1
    }

    /// Flatten(axis 1) or a Reshape to [N, C] of `value`, its sole reader.
    private func flatten(_ value: String, channels c: Int, _ index: GraphIndex) -> (index: Int, node: Node)? {
        guard let flat = index.soleConsumer(value) else { return nil }
        if flat.node.op == .flatten { return (flat.node.int("axis") ?? 1) == 1 ? flat : nil }
        guard flat.node.op == .reshape, let target = index.constant(flat.node.inputs[1]), target.dtype == .int64, target.count == 2 else {
            return nil
        }
        let t = target.int64s
        guard t[1] == Int64(c) || t[1] == -1, t[0] == -1 || (t[0] == 0 && flat.node.int("allowzero") != 1) || t[1] == Int64(c) else {
            return nil
        }
        return flat
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, pool) in g.nodes.enumerated() {
            guard let keep = spatialMean(pool, index), let shape = facts[pool.inputs[0]]?.shape, shape.count == 4,
                let c = shape[1].value
            else { continue }
            var removed: Set<Int> = [i]
            var mapInput = pool.inputs[0]
            var cursor = pool.outputs[0]
            var norm: LastAxisNorm?
            var normFirst = false
            // Norm first: the pool reads Transpose(Norm(y)) of an NHWC map y.
            if let back = index.producer(mapInput, .transpose), back.node.ints("perm") == [0, 3, 1, 2],
                index.soleConsumer(mapInput) != nil, let n = index.producer(back.node.inputs[0]),
                index.soleConsumer(n.node.outputs[0]) != nil, let found = index.lastAxisNorm(n, channels: c, rank: 4)
            {
                norm = found
                normFirst = true
                mapInput = found.node.inputs[0]
                removed.formUnion([back.index, found.index])
            }
            if keep {
                // [N, C, 1, 1]: the norm sits between transposes, or after the flatten.
                if !normFirst, let t = index.soleConsumer(cursor, .transpose), let (n, back) = index.channelsFirstNorm(from: t, channels: c)
                {
                    norm = n
                    removed.formUnion([t.index, n.index, back.index])
                    cursor = back.node.outputs[0]
                }
                guard let flat = flatten(cursor, channels: c, index) else { continue }
                removed.insert(flat.index)
                cursor = flat.node.outputs[0]
            }
            if !normFirst && norm == nil {
                guard let n = index.lastAxisNorm(readerOf: cursor, channels: c, rank: 2) else { continue }
                norm = n
                removed.insert(n.index)
                cursor = n.node.outputs[0]
            }
            guard let norm else { continue }
            // What follows: up to Linear, activation, Linear.
            var layers: [(index: Int, node: Node, weight: Tensor)] = []
            var activation: String?
            var width = c
            while layers.count < 2, let linear = index.soleConsumer(cursor, .linear), linear.node.inputs[0] == cursor,
                linear.node.string("activation") == nil, let w = index.constant(linear.node.inputs[1]), w.shape.count == 2,
                w.shape[0] == width
            {
                if linear.node.inputs.count > 2, !linear.node.inputs[2].isEmpty,
                    index.constant(linear.node.inputs[2])?.vector(of: w.shape[1]) == nil
                {
                    break
                }
                layers.append((linear.index, linear.node, w))
                removed.insert(linear.index)
                cursor = linear.node.outputs[0]
                width = w.shape[1]
                guard layers.count == 1, let act = index.soleConsumer(cursor), let name = Activation.name(of: act.node) else { break }
                activation = name
                removed.insert(act.index)
                cursor = act.node.outputs[0]
            }
            // Without a classifier the features themselves must be what the graph returns.
            if layers.isEmpty && !index.graphOutputs.contains(cursor) { continue }
            let out = cursor
            let gamma = index.constant(norm.scale)?.vector(of: c) ?? []
            let beta = norm.shift.flatMap { index.constant($0)?.vector(of: c) } ?? [Float](repeating: 0, count: c)
            var tensors: [String: Tensor] = [:]
            let nhwc = g.freshName("\(mapInput).nhwc")
            let input = normFirst ? mapInput : nhwc
            func bias(_ node: Node, _ n: Int) -> [Float] {
                node.inputs.count > 2 && !node.inputs[2].isEmpty
                    ? index.constant(node.inputs[2])?.floats ?? [] : [Float](repeating: 0, count: n)
            }
            var fc1: Linear?, fc2: Linear?
            var headNorm = norm.fused()
            if let first = layers.first {
                let (w, b) = foldAffineIntoLinear(
                    weight: first.weight, bias: bias(first.node, first.weight.shape[1]), gamma: gamma, beta: beta)
                let wName = g.freshName("\(out).head_weight"), bName = g.freshName("\(out).head_bias")
                tensors[wName] = w
                tensors[bName] = b
                fc1 = Linear(weight: Constant(name: wName, tensor: w), bias: Constant(name: bName, tensor: b), precision: .float32)
                if layers.count == 2 {
                    let second = layers[1]
                    let w2 = g.freshName("\(out).head_weight2"), b2 = g.freshName("\(out).head_bias2")
                    tensors[w2] = second.weight
                    tensors[b2] = Tensor(floats: bias(second.node, second.weight.shape[1]), shape: [second.weight.shape[1]])
                    fc2 = Linear(
                        weight: Constant(name: w2, tensor: second.weight), bias: Constant(name: b2, tensor: tensors[b2]!),
                        precision: .float32)
                }
            } else {
                let sName = g.freshName("\(out).head_scale"), hName = g.freshName("\(out).head_shift")
                tensors[sName] = Tensor(floats: gamma, shape: [c])
                tensors[hName] = Tensor(floats: beta, shape: [c])
                headNorm = norm.fused(
                    weight: Constant(name: sName, tensor: tensors[sName]!), bias: Constant(name: hName, tensor: tensors[hName]!))
            }
            let fusedActivation = activation.flatMap { FusedActivation(rawValue: $0) }
            if activation != nil && fusedActivation == nil { continue }
            let payload = FusedPayload.head(
                HeadPayload(norm: headNorm, normFirst: normFirst, fc1: fc1, activation: fusedActivation, fc2: fc2))
            var nodes: [Node] = []
            if !normFirst {
                nodes.append(toNHWC(pool.name, mapInput, nhwc))
            }
            nodes.append(payload.node(name: layers.last?.node.name ?? pool.name, input: input, outputs: [out]))
            g.replace(removed, with: nodes, adding: tensors)
            return true
        }
        return false
    }
}
