import CNXGraph

/// Folds ConvNeXt V2's global response normalisation,
/// `Gx = ReduceL2(x, H and W); Nx = Gx / (ReduceMean(Gx, C) + eps); y = gamma * (x * Nx) + beta + x`,
/// into one `cnx.GRN` node. Two layouts:
///
/// - channels-last (Linear MLP models): H, W are axes 1, 2 and C is axis 3;
/// - channels-first (timm's `conv_mlp` V2 models, atto to nano, whose GRN sits between 1x1
///   convolutions): H, W are axes 2, 3 and C is axis 1; the fold writes Transpose to NHWC, the
///   GRN, Transpose back, which the transpose pass cancels against the convolutions' permutes.
///
/// The products and sums may come in any operand order, and the residual `+ x` before or after
/// `+ beta`. A beta of zero may be missing (constant folding drops `+ 0`), and so may a gamma
/// of one; the missing one is recorded as zeros or ones.
public struct FoldGRN: RepeatedRewrite {
    public let name = "fold-grn"
    public let summary = "GRN chains of ConvNeXt V2 (channels-last or channels-first) -> cnx.GRN"

    public init() {}

    /// A per-channel constant of `channels` values laid out along `axis` of a rank-4 tensor.
    private func perChannel(_ name: String, _ index: GraphIndex, channels: Int, channelsFirst: Bool) -> [Float]? {
        guard let t = index.constant(name), let v = t.vector(of: channels) else { return nil }
        if channelsFirst { return t.shape == [channels, 1, 1] || t.shape == [1, channels, 1, 1] ? v : nil }
        return t.shape.last == channels ? v : nil
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, l2) in g.nodes.enumerated() where l2.op == .reduceL2 {
            let x = l2.inputs[0], gx = l2.outputs[0]
            guard let shape = facts[x]?.shape, shape.count == 4, (l2.int("keepdims") ?? 1) == 1,
                let spatial = FoldRMSNorm.axes(l2, index, rank: 4).map(Set.init)
            else { continue }
            let channelsFirst = spatial == [2, 3]
            guard channelsFirst || spatial == [1, 2], let channels = shape[channelsFirst ? 1 : 3].value,
                let gxReaders = index.consumers[gx], gxReaders.count == 2, !index.graphOutputs.contains(gx)
            else { continue }
            let readers = gxReaders.map { (index: $0, node: g.nodes[$0]) }
            guard let mean = readers.first(where: { $0.node.op == .reduceMean }),
                FoldRMSNorm.axes(mean.node, index, rank: 4) == [channelsFirst ? 1 : 3], (mean.node.int("keepdims") ?? 1) == 1,
                let div = readers.first(where: { $0.node.op == .div }), div.node.inputs.first == gx,
                let addEps = index.soleConsumer(mean.node.outputs[0], .add),
                let epsName = index.other(addEps.node, than: mean.node.outputs[0]), let eps = index.scalar(epsName),
                div.node.inputs[1] == addEps.node.outputs[0], index.soleConsumer(addEps.node.outputs[0]) != nil,
                let scaleX = index.soleConsumer(div.node.outputs[0], .mul), index.other(scaleX.node, than: div.node.outputs[0]) == x
            else { continue }
            var removed: Set<Int> = [i, mean.index, addEps.index, div.index, scaleX.index]
            var cursor = scaleX.node.outputs[0]
            var gamma = [Float](repeating: 1, count: channels), beta = [Float](repeating: 0, count: channels)
            if let mul = index.soleConsumer(cursor, .mul), let c = index.other(mul.node, than: cursor),
                let v = perChannel(c, index, channels: channels, channelsFirst: channelsFirst)
            {
                gamma = v
                removed.insert(mul.index)
                cursor = mul.node.outputs[0]
            }
            // `+ beta` and `+ x`, in either order; the residual must be there.
            var residual = false, sawBeta = false
            while let add = index.soleConsumer(cursor, .add), let other = index.other(add.node, than: cursor) {
                if other == x && !residual {
                    residual = true
                } else if !sawBeta, let v = perChannel(other, index, channels: channels, channelsFirst: channelsFirst) {
                    beta = v
                    sawBeta = true
                } else {
                    break
                }
                removed.insert(add.index)
                cursor = add.node.outputs[0]
                if residual && sawBeta { break }
            }
            guard residual, g.nodes[removed.max()!].outputs[0] == cursor else { continue }
            let out = cursor
            let gName = g.freshName("\(out).grn_gamma"), bName = g.freshName("\(out).grn_beta")
            let tensors = [gName: Tensor(floats: gamma, shape: [channels]), bName: Tensor(floats: beta, shape: [channels])]
            let attrs: [String: Attribute] = ["grn_epsilon": .float(eps)]
            g.replace(
                removed, withChannelOp: .grn, named: l2.name, x, [gName, bName], attributes: attrs, output: out,
                channelsFirst: channelsFirst, adding: tensors)
            return true
        }
        return false
    }
}
