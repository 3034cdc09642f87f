import CNXGraph
import CNXReference

/// Fuses the feature maps a backbone hands out, so that no node is left on the reference
/// kernels: a norm over the last axis of an NHWC map whose one reader is the transpose to NCHW
/// (transformers' `hidden_states_norms`, a channels-first LayerNorm on each stage output) becomes
/// one `cnx.Features`; so does a bare transpose to NCHW of a fused operation's NHWC map when it is
/// a graph output (a timm `features_only` backbone's outputs, `norm` "none").
///
/// Runs last, on what the other passes leave: the transpose must be exactly NHWC -> NCHW
/// (perm [0, 3, 1, 2]) of a rank-4 map, the norm over its last axis with constant per-channel
/// parameters; anything else stays as it is.
public struct FuseFeatures: RepeatedRewrite {
    public let name = "fuse-features"
    public let summary = "norm over channels -> transpose to NCHW, and fused maps handed out NCHW -> cnx.Features"

    public init() {}

    static let nhwcProducers: Set<OpType> = [.stem, .downsample, .block]

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, t) in g.nodes.enumerated() where t.op == .transpose && t.ints("perm") == [0, 3, 1, 2] {
            guard let p = index.producer(t.inputs[0]) else { continue }
            // Norm, then the transpose: the norm's channel count is its scale's length.
            if index.soleConsumer(t.inputs[0]) != nil, p.node.inputs.count >= 2,
                let channels = index.constant(p.node.inputs[1])?.count,
                let norm = index.lastAxisNorm(p, channels: channels, rank: 4)
            {
                let fused = norm.fused()
                g.replace(
                    [norm.index, i],
                    with: [
                        FeaturesPayload(kind: fused.kind, epsilon: fused.epsilon)
                            .node(
                                name: norm.node.name, input: norm.node.inputs[0], scale: norm.scale, shift: norm.shift, outputs: t.outputs)
                    ])
                return true
            }
            if Self.nhwcProducers.contains(p.node.op), index.graphOutputs.contains(t.outputs[0]) {
                g.replace(
                    [i],
                    with: [
                        FeaturesPayload(kind: .none, epsilon: 1e-6).node(
                            name: t.name, input: t.inputs[0], scale: nil, shift: nil, outputs: t.outputs)
                    ])
                return true
            }
        }
        return false
    }
}
