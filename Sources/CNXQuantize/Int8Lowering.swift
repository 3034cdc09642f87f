import CKernels
import CNXGraph
import CNXReference

/// Rewrites the pointwise layers of fused blocks to int8: weights symmetric per output
/// channel (scale = max |w| / 127 over the channel), the activation entering each layer u8 with
/// a zero point from calibration. The norms (LayerNorm, RMS, simple), the activations (GELU,
/// tanh GELU, SiLU: the fused op's attributes stay as they are), GRN and the residual stream stay
/// float32 (the runtime dequantizes in the GEMM epilogue and quantizes after the norm), so no
/// value is quantized twice. The depthwise convolution of a block whose two pointwise layers are
/// int8 runs on bfloat16 (`bfloatDepthwise`); of any other block, float32.
public enum Int8Lowering {
    /// A name people can type for each quantizable layer: `stem` (an overlapping stem's second
    /// convolution: `stem.1`), `stages.S.downsample`, `stages.S.blocks.J.pw1` / `.pw2`, `head`
    /// (an MLP head's hidden layer: `head.pre_logits`, as timm names it).
    public static func layerNames(_ graph: Graph) -> [LayerKey: String] {
        var names: [LayerKey: String] = [:]
        var stage = -1, block_ = 0, lastWidth: Int?, stems = 0
        for (i, node) in graph.nodes.enumerated() where FusedPayload.describes(node.op) {
            guard let payload = try? FusedPayload(node, in: graph) else { continue }
            switch payload {
            case .stem:
                names[LayerKey(node: i, layer: 1)] = stems == 0 ? "stem" : "stem.\(stems)"
                stems += 1
            case .head(let head):
                // A hidden layer is the one followed by the activation.
                if head.fc1 != nil { names[LayerKey(node: i, layer: 1)] = head.activation == nil ? "head" : "head.pre_logits" }
                if head.fc1 != nil && head.fc2 != nil { names[LayerKey(node: i, layer: 2)] = "head" }
            case .downsample:
                names[LayerKey(node: i, layer: 1)] = "stages.\(stage + 1).downsample"
                lastWidth = nil
            case .block(let block):
                let width = block.depthwise.weight.tensor.shape.last
                if width != lastWidth { stage += 1; block_ = 0 } else { block_ += 1 }
                lastWidth = width
                names[LayerKey(node: i, layer: 1)] = "stages.\(stage).blocks.\(block_).pw1"
                names[LayerKey(node: i, layer: 2)] = "stages.\(stage).blocks.\(block_).pw2"
            }
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
        for (i, node) in graph.nodes.enumerated() where FusedPayload.describes(node.op) {
            guard let payload = try? FusedPayload(node, in: graph) else { continue }
            switch payload {
            case .block(let block) where block.pw1.precision == .float32:
                let w = block.pw1.weight.tensor
                result[LayerKey(node: i, layer: 1)] = Equalizable(weight: w, period: w.shape[0])
            case .downsample(let down) where down.conv.precision == .float32:
                let w = down.conv.weight.tensor, k = down.kernel
                if w.shape[0] % (k * k) == 0 { result[LayerKey(node: i, layer: 1)] = Equalizable(weight: w, period: w.shape[0] / (k * k)) }
            default:
                break
            }
        }
        return result
    }

    /// Per-output-channel symmetric int8 weights and their scales, for a [K, N] float weight.
    static func quantizeWeight(_ w: Tensor) -> Tensor {
        let (k, n) = (w.shape[0], w.shape[1])
        var q = Tensor(zeros: .int8, shape: [k, n])
        var scales = [Float](repeating: 1, count: n)
        var codes = [Int8](repeating: 0, count: k * n)
        w.withUnsafeFloats { src in
            for j in 0..<n {
                var m: Float = 0
                for r in 0..<k { m = max(m, abs(src[r * n + j])) }
                scales[j] = m > 0 ? m / 127 : 1
            }
            for r in 0..<k {
                for j in 0..<n {
                    let v = (src[r * n + j] / scales[j]).rounded(.toNearestOrEven)
                    codes[r * n + j] = Int8(max(-127, min(127, v)))
                }
            }
        }
        codes.withUnsafeBytes { src in q.withUnsafeMutableElementBytes { $0.copyMemory(from: src) } }
        q.quantization = Quantization(axis: 1, scales: scales)
        return q
    }

    /// Quantizes the layers in `activations` (all of them, less `keepFloat`).
    public static func apply(_ graph: inout Graph, activations: [LayerKey: ActivationQuantization], keepFloat: Set<LayerKey> = []) throws {
        for key in activations.keys.sorted() where !keepFloat.contains(key) {
            guard key.node < graph.nodes.count, FusedPayload.describes(graph.nodes[key.node].op), let q = activations[key] else {
                throw CNXError("calibration refers to node \(key.node), which is not a fused operation")
            }
            var node = graph.nodes[key.node]
            var payload = try FusedPayload(node, in: graph)
            guard let layer = payload.layers[key.layer] else { throw CNXError("\(node.label): it has no pointwise layer \(key.layer)") }
            guard layer.precision == .float32 else { continue }
            var source = layer.weight.tensor
            if let s = q.channelScales {
                // diag(s) · W: row r times s[r], undoing the division of the input.
                guard s.count == source.shape[0] else {
                    throw CNXError("\(node.label): \(s.count) channel scales for a weight of \(source.shape[0]) rows")
                }
                let n = source.shape[1]
                let scaled = Tensor(zeros: .float32, shape: source.shape)
                source.withUnsafeFloats { w in
                    scaled.withUnsafeMutableFloats { d in for r in 0..<s.count { for j in 0..<n { d[r * n + j] = w[r * n + j] * s[r] } } }
                }
                source = scaled
            }
            let qw = quantizeWeight(source)
            let name = layer.weight.name + ".int8"
            graph.initializers[name] = qw
            try payload.setLayer(
                key.layer,
                Linear(
                    weight: Constant(name: name, tensor: qw), bias: layer.bias,
                    precision: .int8(
                        Int8Parameters(
                            activationScale: q.scale, activationZero: q.zero,
                            weightScales: qw.quantization!.scales, channelScales: q.channelScales))))
            payload.write(into: &node)
            graph.nodes[key.node] = node
        }
        try bfloatDepthwise(&graph)
        graph.removeDeadCode()
    }

    /// The blocks of `graph` with the quadratic GELU and with exact GELU.
    public static func geluBlocks(_ graph: Graph) throws -> (quadratic: Int, exact: Int) {
        var quadratic = 0, exact = 0
        for node in graph.nodes where node.op == .block {
            guard case .block(let op) = try FusedPayload(node, in: graph) else { continue }
            if op.activation == .geluQuadratic { quadratic += 1 } else if op.activation == .gelu { exact += 1 }
        }
        return (quadratic, exact)
    }

    /// What `quantization.gelu` records for `graph`: "quadratic" when every block whose activation
    /// is a GELU has the quadratic one, "exact" when none has, else "quadratic and exact"; nil
    /// for a model whose blocks use no GELU (tanh GELU, SiLU).
    public static func geluSummary(_ graph: Graph) throws -> String? {
        let (quadratic, exact) = try geluBlocks(graph)
        if quadratic + exact == 0 { return nil }
        return quadratic == 0 ? "exact" : exact == 0 ? "quadratic" : "quadratic and exact"
    }

    /// The smallest u8 step of a block's hidden activation at which `quadraticGELU` gives the
    /// block the quadratic GELU: 1000 times that GELU's largest error (1.12e-5), so the error
    /// moves a u8 code only where the exact value lies within a thousandth of a step of a
    /// rounding boundary, and then by one, and adds at most 1.12e-5 to the value a code stands for.
    public static let quadraticGELUStep: Float = 0.0112

    /// Gives the quadratic GELU (`gelu_quadratic`, Formats/CNX.md) to every block whose two
    /// pointwise layers are int8 (so the hidden activation is rounded to u8 codes right after
    /// GELU: no GRN between), whose activation is exact GELU and whose hidden step is at least
    /// `quadraticGELUStep`. Its two coefficients fewer make the first layer's epilogue cheaper
    /// (ConvNeXt-T int8: 2-2.5% of the time on AVX-512, Benchmarks/PROFILE.md). Returns the
    /// blocks' count.
    @discardableResult
    public static func quadraticGELU(_ graph: inout Graph) throws -> Int {
        var changed = 0
        for i in graph.nodes.indices where graph.nodes[i].op == .block {
            var node = graph.nodes[i]
            guard case .block(var op) = try FusedPayload(node, in: graph), op.activation == .gelu, op.grn == nil,
                case .int8 = op.pw1.precision, case .int8(let hidden) = op.pw2.precision,
                hidden.activationScale >= quadraticGELUStep
            else { continue }
            op.activation = .geluQuadratic
            FusedPayload.block(op).write(into: &node)
            graph.nodes[i] = node
            changed += 1
        }
        return changed
    }

    /// Stores the depthwise weight of every block whose two pointwise layers are int8 as
    /// bfloat16 (round to nearest even), so the block's depthwise convolution runs on bfloat16:
    /// input and weights rounded, float32 sums (Formats/CNX.md, `cnx.Block`). On CPUs with the
    /// bfloat16 dot product that is 1.4-1.8x the float32 convolution, and the rounding is far
    /// below the u8 step of the norm's output that follows (the logits' SQNR against float32 is
    /// the same to 0.1 dB on ConvNeXt-T and ConvNeXt-B 384, Benchmarks/PROFILE.md). Returns the
    /// blocks' count.
    @discardableResult
    public static func bfloatDepthwise(_ graph: inout Graph) throws -> Int {
        var converted = 0
        for i in graph.nodes.indices where graph.nodes[i].op == .block {
            var node = graph.nodes[i]
            guard case .block(var op) = try FusedPayload(node, in: graph), case .int8 = op.pw1.precision,
                case .int8 = op.pw2.precision, !op.depthwise.onBFloat16
            else { continue }
            let w = op.depthwise.weight.tensor
            guard w.dtype == .float32 else { throw CNXError("\(node.label): depthwise weight is \(w.dtype.name), not float32") }
            let name = op.depthwise.weight.name + ".bf16"
            let h = graph.initializers[name] ?? Tensor(zeros: .bfloat16, shape: w.shape)
            if graph.initializers[name] == nil {
                w.withUnsafeFloats { src in
                    h.withUnsafeMutableElementBytes { raw in
                        cnx_bf16_from_f32_n(src.baseAddress!, Int64(w.count), raw.bindMemory(to: UInt16.self).baseAddress!)
                    }
                }
                graph.initializers[name] = h
            }
            op.depthwise.weight = Constant(name: name, tensor: h)
            FusedPayload.block(op).write(into: &node)
            graph.nodes[i] = node
            converted += 1
        }
        return converted
    }
}
