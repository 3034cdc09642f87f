import CNXGraph

/// Rewrites the pointwise layers of fused blocks to int8: weights symmetric per output
/// channel (scale = max |w| / 127 over the channel), the activation entering each layer u8 with
/// a zero point from calibration. The norms (LayerNorm, RMS, simple), the activations (GELU,
/// tanh GELU, SiLU: the fused op's attributes stay as they are), GRN, the depthwise convolution
/// and the residual stream stay float32 (the runtime dequantizes in the GEMM epilogue and
/// quantizes after the norm), so no value is quantized twice.
public enum Int8Lowering {
    /// A name people can type for each quantizable layer: `stem` (an overlapping stem's second
    /// convolution: `stem.1`), `stages.S.downsample`, `stages.S.blocks.J.pw1` / `.pw2`, `head`
    /// (an MLP head's hidden layer: `head.pre_logits`, as timm names it).
    public static func layerNames(_ graph: Graph) -> [LayerKey: String] {
        var names: [LayerKey: String] = [:]
        var stage = -1, block = 0, lastWidth: Int?, stems = 0
        for (i, node) in graph.nodes.enumerated() where [.block, .downsample, .stem, .head].contains(node.op) {
            switch node.op {
            case .stem:
                names[LayerKey(node: i, layer: 1)] = stems == 0 ? "stem" : "stem.\(stems)"
                stems += 1
                continue
            case .head:
                let layers = [1, 3].filter { $0 < node.inputs.count && !node.inputs[$0].isEmpty }.count
                // A hidden layer is the one followed by the activation.
                if layers >= 1 { names[LayerKey(node: i, layer: 1)] = node.string("activation") == nil ? "head" : "head.pre_logits" }
                if layers == 2 { names[LayerKey(node: i, layer: 2)] = "head" }
                continue
            case .downsample:
                names[LayerKey(node: i, layer: 1)] = "stages.\(stage + 1).downsample"
                lastWidth = nil
                continue
            default: break
            }
            let width = graph.initializers[node.inputs[1]]?.shape.last
            if width != lastWidth { stage += 1; block = 0 } else { block += 1 }
            lastWidth = width
            names[LayerKey(node: i, layer: 1)] = "stages.\(stage).blocks.\(block).pw1"
            names[LayerKey(node: i, layer: 2)] = "stages.\(stage).blocks.\(block).pw2"
        }
        return names
    }

    /// The layers whose input a norm makes, so that the runtime can divide it by per-channel
    /// scales for free: every block's first layer and the downsample layers. Not the stem (it
    /// reads the image), nor a layer after an activation; nor the second layer of a V2 block,
    /// though the runtime could scale the GRN's output as cheaply: GRN rescales each channel by
    /// a factor that changes from image to image (it divides by the map's own statistics), so
    /// per-channel maxima from calibration do not hold on other images, and a channel that
    /// goes past its calibrated maximum is clipped at a fraction of the per-tensor range. Nor
    /// the head, for the same reason: one row per image is too few values per channel.
    public static func equalizable(_ graph: Graph) -> [LayerKey: Equalizable] {
        var result: [LayerKey: Equalizable] = [:]
        for (i, node) in graph.nodes.enumerated() {
            func weight(_ slot: Int) -> Tensor? {
                guard slot < node.inputs.count, let w = graph.initializers[node.inputs[slot]], w.dtype == .float32, w.shape.count == 2 else { return nil }
                return w
            }
            switch node.op {
            case .block:
                if let w = weight(3) { result[LayerKey(node: i, layer: 1)] = Equalizable(weight: w, period: w.shape[0]) }
            case .downsample:
                if let w = weight(1), let k = node.int("kernel"), k > 0, w.shape[0] % (k * k) == 0 {
                    result[LayerKey(node: i, layer: 1)] = Equalizable(weight: w, period: w.shape[0] / (k * k))
                }
            default:
                break
            }
        }
        return result
    }

    /// Per-output-channel symmetric int8 weights and their scales, for a [K, N] float weight.
    static func quantizeWeight(_ w: Tensor) -> (Tensor, Tensor) {
        let (k, n) = (w.shape[0], w.shape[1])
        let q = Tensor(zeros: .int8, shape: [k, n])
        var scales = [Float](repeating: 1, count: n)
        let src = w.floatPointer, dst = q.storage.bytes.assumingMemoryBound(to: Int8.self)
        for j in 0..<n {
            var m: Float = 0
            for r in 0..<k { m = max(m, abs(src[r * n + j])) }
            scales[j] = m > 0 ? m / 127 : 1
        }
        for r in 0..<k {
            for j in 0..<n {
                let v = (src[r * n + j] / scales[j]).rounded(.toNearestOrEven)
                dst[r * n + j] = Int8(max(-127, min(127, v)))
            }
        }
        return (q, Tensor(floats: scales, shape: [n]))
    }

    /// Quantizes the layers in `activations` (all of them, less `keepFloat`).
    public static func apply(_ graph: inout Graph, activations: [LayerKey: ActivationQuantization], keepFloat: Set<LayerKey> = []) throws {
        for key in activations.keys.sorted() where !keepFloat.contains(key) {
            guard key.node < graph.nodes.count, [.block, .stem, .downsample, .head].contains(graph.nodes[key.node].op), let q = activations[key] else {
                throw CNXError("calibration refers to node \(key.node), which is not a fused operation")
            }
            var node = graph.nodes[key.node]
            let slot = node.op == .block ? (key.layer == 1 ? 3 : 5) : (key.layer == 1 ? 1 : 3)
            guard slot < node.inputs.count, let w = graph.initializers[node.inputs[slot]], w.shape.count == 2 else {
                throw CNXError("\(node.label): pointwise layer \(key.layer) has no 2-D weight")
            }
            guard w.dtype == .float32 else { continue }
            var source = w
            if let s = q.channelScales {
                // diag(s) · W: row r times s[r], undoing the division of the input.
                guard s.count == w.shape[0] else { throw CNXError("\(node.label): \(s.count) channel scales for a weight of \(w.shape[0]) rows") }
                let n = w.shape[1]
                source = Tensor(zeros: .float32, shape: w.shape)
                for r in 0..<w.shape[0] { for j in 0..<n { source.floatPointer[r * n + j] = w.floatPointer[r * n + j] * s[r] } }
                node.attributes["a\(key.layer)_channel_scales"] = .tensor(Tensor(floats: s, shape: [s.count]))
            }
            let (qw, scales) = quantizeWeight(source)
            let name = node.inputs[slot] + ".int8"
            graph.initializers[name] = qw
            node.inputs[slot] = name
            node.attributes["a\(key.layer)_scale"] = .float(q.scale)
            node.attributes["a\(key.layer)_zero"] = .int(Int(q.zero))
            node.attributes["w\(key.layer)_scales"] = .tensor(scales)
            graph.nodes[key.node] = node
        }
        graph.removeDeadCode()
    }
}
