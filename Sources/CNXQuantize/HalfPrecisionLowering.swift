import CKernels
import CNXFormat
import CNXGraph
import CNXReference

/// Stores the weights of the GEMM layers of a fused graph as bfloat16 or float16, without
/// calibration: every block's two pointwise layers, the downsample layers and the head's
/// layers. The stem (it reads the image), the depthwise convolutions, the norms, the
/// activations, GRN, every bias and the residual stream stay float32; so does any layer in
/// `keepFloat`. In a graph already quantized, int8 layers stay int8 and the others (those int8
/// kept float32) get half weights: a mixed file. The runtime takes the precision of each layer from its weight tensor's dtype
/// (cnx_half.h: float32 activations and accumulation, the weights widened or, for bfloat16 on
/// CPUs with AVX512_BF16, the activations rounded to bfloat16 for vdpbf16ps).
public enum HalfPrecisionLowering {
    /// The weight dtypes this lowering writes.
    public static let dtypes: [DType] = [.bfloat16, .float16]

    public struct Result {
        /// Layer names (as inspect names them) now in the half dtype, and those kept float32.
        public var lowered: [String]
        public var keptFloat: [String]
        public var metadata: [String: MetadataValue]
    }

    /// The name of the pass, as `converter.passes` records it.
    public static func passName(_ dtype: DType) -> String { "lower-\(dtype.name)" }

    /// Rounds (to nearest even) the weights of the layers to `dtype`, in place. `only`: lower
    /// exactly these layers (the stem included) and no other; what int8 files do with the stem
    /// and head they leave unquantized (Quantizer.Options.endsPrecision).
    @discardableResult
    public static func apply(_ graph: inout Graph, to dtype: DType, keepFloat: Set<LayerKey> = [], only: Set<LayerKey>? = nil) throws
        -> Result
    {
        guard dtypes.contains(dtype) else { throw CNXError("weights can be lowered to bfloat16 or float16, not \(dtype.name)") }
        guard graph.nodes.contains(where: { $0.op == .block }) else {
            throw CNXError("no fused ConvNeXt blocks: \(dtype.name) weights need a model the converter recognises")
        }
        // GEMM weights only: an int8 file's bfloat16 depthwise weights (Int8Lowering) stay as they
        // are, and so do the half weights an int8 file gives its stem and head (the layers of a
        // model with int8 layers that are half already are skipped below).
        var quantized = false, half = false
        for node in graph.nodes where FusedPayload.describes(node.op) {
            for linear in try FusedPayload(node, in: graph).layers.values {
                if case .int8 = linear.precision { quantized = true }
                if linear.precision == .bfloat16 || linear.precision == .float16 { half = true }
            }
        }
        if half && !quantized { throw CNXError("the model's weights are already bfloat16 or float16") }
        let names = Int8Lowering.layerNames(graph)
        var lowered: [String] = [], kept: [String] = []
        var converted: [String: String] = [:]  // float32 weight -> its half copy (shared weights once)
        for key in names.keys.sorted() {
            let name = names[key]!
            var node = graph.nodes[key.node]
            if let only, !only.contains(key) { continue }
            var payload = try FusedPayload(node, in: graph)
            guard let layer = payload.layers[key.layer] else { throw CNXError("\(node.label): layer \(name) has no weight") }
            if case .int8 = layer.precision { continue }  // int8 stays
            if layer.precision == .bfloat16 || layer.precision == .float16 { continue }  // an int8 file's half stem or head
            if (only == nil && node.op == .stem) || keepFloat.contains(key) {
                kept.append(name)
                continue
            }
            let w = layer.weight.tensor
            guard w.shape.count == 2, w.dtype == .float32 else {
                throw CNXError("\(node.label): layer \(name) has no 2-D float32 weight")
            }
            let source = layer.weight.name
            let target = converted[source] ?? source + (dtype == .bfloat16 ? ".bf16" : ".f16")
            if converted[source] == nil {
                let h = Tensor(zeros: dtype, shape: w.shape)
                try w.withUnsafeFloats { src in
                    try h.withUnsafeMutableElementBytes { raw in
                        let bits = raw.bindMemory(to: UInt16.self)
                        if dtype == .bfloat16 {
                            cnx_bf16_from_f32_n(src.baseAddress!, Int64(w.count), bits.baseAddress!)
                        } else {
                            cnx_f16_from_f32_n(src.baseAddress!, Int64(w.count), bits.baseAddress!)
                            // float16 tops out at 65504: a finite weight past it would become infinite.
                            for i in 0..<w.count where src[i].isFinite && (bits[i] & 0x7C00) == 0x7C00 {
                                throw CNXError(
                                    "\(node.label): weight '\(source)' holds \(src[i]), beyond float16's range (65504); use --bf16")
                            }
                        }
                    }
                }
                graph.initializers[target] = h
                converted[source] = target
            }
            try payload.setLayer(
                key.layer,
                Linear(
                    weight: Constant(name: target, tensor: graph.initializers[target]!), bias: layer.bias,
                    precision: dtype == .bfloat16 ? .bfloat16 : .float16))
            payload.write(into: &node)
            graph.nodes[key.node] = node
            lowered.append(name)
        }
        graph.removeDeadCode()
        let metadata: [String: MetadataValue] = [
            MetadataKey.quantizationDescription: .string(
                "\(dtype.name) weights (rounded to nearest even, no calibration) in \(lowered.count) GEMM layers; activations, accumulation, the stem, depthwise convolutions, norms, activation functions and the residual stream float32"
            ),
            MetadataKey.quantizationHalfLayers(dtype): .strings(lowered),
            MetadataKey.quantizationFloatLayers: .strings(kept),
            MetadataKey.quantizationDepthwise: .string("float32"),
        ]
        return Result(lowered: lowered, keptFloat: kept, metadata: metadata)
    }
}
