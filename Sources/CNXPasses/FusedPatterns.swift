import CNXGraph
import CNXReference

/// A normalisation over the last axis, as the fold passes leave it: LayerNormalization,
/// RMSNormalization or cnx.SimpleNorm, with constant per-channel parameters.
struct LastAxisNorm {
    let index: Int
    let node: Node
    /// "layer", "rms" or "simple": the fused operations' `norm` attribute.
    let kind: String
    let scale: String
    let shift: String?
    let eps: Float

    /// The operations that are such a norm, by their `kind`.
    static let kinds: [OpType: String] = [.layerNormalization: "layer", .rmsNormalization: "rms", .simpleNorm: "simple"]

    /// This norm as a fused operation's (`FusedPayload` writes its attributes), with the given
    /// scale and shift constants.
    func fused(weight: Constant? = nil, bias: Constant? = nil) -> Norm {
        Norm(kind: FusedNormKind(rawValue: kind) ?? .layer, epsilon: eps, weight: weight, bias: bias)
    }

    /// True when the scale is all ones and there is no shift (or an all-zero one): the affine
    /// has been folded into the next layer.
    func isPlain(_ index: GraphIndex) -> Bool {
        guard let s = index.constant(scale), s.dtype == .float32, s.floats.allSatisfy({ $0 == 1 }) else { return false }
        guard let shift else { return true }
        return index.constant(shift)?.floats.allSatisfy { $0 == 0 } == true
    }
}

/// The activations the fused operations carry, by their attribute value.
enum Activation {
    /// "gelu" (erf), "gelu_tanh" or "silu" for an activation node, nil for anything else.
    static func name(of node: Node) -> String? {
        switch node.op {
        case .gelu:
            switch node.string("approximate") ?? "none" {
            case "none": return "gelu"
            case "tanh": return "gelu_tanh"
            default: return nil
            }
        case .swish:
            return (node.float("alpha") ?? 1) == 1 ? "silu" : nil
        default:
            return nil
        }
    }
}

extension GraphIndex {
    /// `p` as a norm over the last axis of a tensor of the given rank with `channels` channels.
    func lastAxisNorm(_ p: (index: Int, node: Node), channels: Int, rank: Int) -> LastAxisNorm? {
        let n = p.node
        guard let kind = LastAxisNorm.kinds[n.op] else { return nil }
        if n.op != .simpleNorm {
            let axis = n.int("axis") ?? -1
            guard axis == -1 || axis == rank - 1 else { return nil }
        }
        guard n.inputs.count >= 2, constant(n.inputs[1])?.vector(of: channels) != nil else { return nil }
        var shift: String?
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
            guard constant(n.inputs[2])?.vector(of: channels) != nil else { return nil }
            shift = n.inputs[2]
        }
        return LastAxisNorm(index: p.index, node: n, kind: kind, scale: n.inputs[1], shift: shift, eps: n.float("epsilon") ?? 1e-5)
    }

    /// The norm that is the sole reader of `value` (as its normalised input).
    func lastAxisNorm(readerOf value: String, channels: Int, rank: Int) -> LastAxisNorm? {
        guard let c = soleConsumer(value), c.node.inputs.first == value else { return nil }
        return lastAxisNorm(c, channels: channels, rank: rank)
    }

    /// The norm `p` over the last axis of an NHWC map, read back to NCHW by a transpose. The
    /// norm's output may have other readers (a backbone's output norm reading it as well);
    /// `back` is then the first transpose to NCHW among them.
    func channelsFirstNormShared(_ p: (index: Int, node: Node), channels: Int) -> (
        norm: LastAxisNorm, back: (index: Int, node: Node), shared: Bool
    )? {
        guard let norm = lastAxisNorm(p, channels: channels, rank: 4), !graphOutputs.contains(norm.node.outputs[0]),
            let readers = consumers[norm.node.outputs[0]],
            let b = readers.first(where: {
                graph.nodes[$0].op == .transpose && graph.nodes[$0].ints("perm") == [0, 3, 1, 2]
                    && graph.nodes[$0].inputs[0] == norm.node.outputs[0]
            })
        else { return nil }
        return (norm, (b, graph.nodes[b]), readers.count > 1)
    }

    /// A channels-first norm starting at the transpose `t`: Transpose to NHWC, a norm over the
    /// last axis, Transpose back. Returns the norm and the transpose back.
    func channelsFirstNorm(from t: (index: Int, node: Node), channels: Int) -> (norm: LastAxisNorm, back: (index: Int, node: Node))? {
        guard t.node.op == .transpose, t.node.ints("perm") == [0, 2, 3, 1],
            let norm = lastAxisNorm(readerOf: t.node.outputs[0], channels: channels, rank: 4),
            let back = soleConsumer(norm.node.outputs[0], .transpose), back.node.ints("perm") == [0, 3, 1, 2]
        else { return nil }
        return (norm, back)
    }
}
