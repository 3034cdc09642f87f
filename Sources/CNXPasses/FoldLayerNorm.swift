import CNXGraph

/// Folds every spelling of LayerNorm into one `LayerNormalization` node over the last axis:
///
/// - the decomposed chain the legacy exporter writes before opset 17, over the last axis:
///   `m = ReduceMean(x); d = x - m; v = ReduceMean(d^2); y = d / sqrt(v + eps) * gamma + beta`;
/// - the same chain over axis 1 of an NCHW tensor (the paper's hand-written channels-first
///   LayerNorm), which becomes Transpose to NHWC, LayerNormalization, Transpose back, so that the
///   transpose pass can cancel the permutes.
///
/// It matches only the full chain with a constant epsilon and a constant affine; an intermediate
/// with a second reader, another axis or another exponent leaves the graph as it was.
public struct FoldLayerNorm: RepeatedRewrite {
    public let name = "fold-layernorm"
    public let summary = "decomposed LayerNorm chains (last axis, or channels-first over axis 1) -> LayerNormalization"

    public init() {}

    private func axes(_ node: Node, _ index: GraphIndex) -> [Int]? {
        if node.inputs.count > 1 {
            guard let t = index.constant(node.inputs[1]), t.dtype == .int64 else { return nil }
            return t.int64s.map { Int($0) }
        }
        return node.ints("axes")
    }

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, mean) in g.nodes.enumerated() where mean.op == .reduceMean {
            let x = mean.inputs[0]
            guard let rank = facts[x]?.shape?.count, (mean.int("keepdims") ?? 1) == 1,
                let ax = axes(mean, index), ax.count == 1
            else { continue }
            let axis = ax[0] < 0 ? ax[0] + rank : ax[0]
            let channelsFirst = axis == 1 && rank == 4
            guard axis == rank - 1 || channelsFirst else { continue }
            // d = x - mean, read by the square and by the division only.
            guard let sub = index.soleConsumer(mean.outputs[0], .sub), sub.node.inputs == [x, mean.outputs[0]],
                let dReaders = index.consumers[sub.node.outputs[0]], dReaders.count == 2,
                !index.graphOutputs.contains(sub.node.outputs[0])
            else { continue }
            let d = sub.node.outputs[0]
            let readers = dReaders.map { (index: $0, node: g.nodes[$0]) }
            guard let pow = readers.first(where: { $0.node.op == .pow || $0.node.op == .mul }),
                let div = readers.first(where: { $0.node.op == .div }), div.node.inputs.first == d
            else { continue }
            if pow.node.op == .pow {
                guard pow.node.inputs[0] == d, close(index.scalar(pow.node.inputs[1]), 2) else { continue }
            } else {
                guard pow.node.inputs == [d, d] else { continue }
            }
            guard let varMean = index.soleConsumer(pow.node.outputs[0], .reduceMean),
                axes(varMean.node, index) == ax, (varMean.node.int("keepdims") ?? 1) == 1,
                let addEps = index.soleConsumer(varMean.node.outputs[0], .add),
                let epsName = index.other(addEps.node, than: varMean.node.outputs[0]),
                let eps = index.scalar(epsName), eps >= 0, eps < 1,
                let sqrt = index.soleConsumer(addEps.node.outputs[0], .sqrt),
                div.node.inputs == [d, sqrt.node.outputs[0]], index.soleConsumer(sqrt.node.outputs[0]) != nil,
                let mul = index.soleConsumer(div.node.outputs[0], .mul),
                let gammaName = index.other(mul.node, than: div.node.outputs[0]),
                let add = index.soleConsumer(mul.node.outputs[0], .add),
                let betaName = index.other(add.node, than: mul.node.outputs[0]),
                let channels = facts[x]?.shape?[axis].value,
                let gamma = index.constant(gammaName), let beta = index.constant(betaName)
            else { continue }
            // The affine must act along the normalised axis alone: (C) for the last axis,
            // (C, 1, 1) or (1, C, 1, 1) for channels-first.
            func fits(_ t: Tensor) -> Bool {
                guard t.dtype == .float32, t.count == channels else { return false }
                if channelsFirst { return t.shape == [channels, 1, 1] || t.shape == [1, channels, 1, 1] }
                return t.shape.last == channels && t.shape.dropLast().allSatisfy { $0 == 1 }
            }
            guard fits(gamma), fits(beta) else { continue }
            let removed: Set<Int> = [i, sub.index, pow.index, varMean.index, addEps.index, sqrt.index, div.index, mul.index, add.index]
            let out = add.node.outputs[0]
            let scale = g.freshName("\(out).ln_scale"), bias = g.freshName("\(out).ln_bias")
            let tensors = [scale: Tensor(floats: gamma.floats, shape: [channels]), bias: Tensor(floats: beta.floats, shape: [channels])]
            let attrs: [String: Attribute] = ["axis": .int(-1), "epsilon": .float(eps)]
            g.replace(
                removed, withChannelOp: .layerNormalization, named: mean.name, x, [scale, bias], attributes: attrs, output: out,
                channelsFirst: channelsFirst, adding: tensors)
            return true
        }
        return false
    }
}
