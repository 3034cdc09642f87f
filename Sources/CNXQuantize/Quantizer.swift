import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

/// Quality of a model's output against a reference output.
public enum OutputError {
    /// Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - x)^2).
    public static func sqnr(_ x: Tensor, _ ref: Tensor) -> Double {
        var signal = 0.0, noise = 0.0
        let a = x.floatPointer, b = ref.floatPointer
        for i in 0..<min(x.count, ref.count) {
            signal += Double(b[i]) * Double(b[i])
            noise += Double(a[i] - b[i]) * Double(a[i] - b[i])
        }
        return noise == 0 ? 200 : 10 * log10(signal / noise)
    }
}

/// int8 quantization of an optimised (fused) float32 graph: calibrate, lower, describe.
public enum Quantizer {
    public struct Options {
        public var method: CalibrationMethod = .percentile
        public var percentile = 99.99
        /// Layer names (`stages.S.blocks.J.pw1`, or `stages.S.blocks.J` for both) kept float32.
        public var keepFloat: [String] = []
        public var threads: Int?
        public var progress: ((Int, Int) -> Void)?
        public init() {}
    }

    public struct Result {
        public var graph: Graph
        public var metadata: [String: MetadataValue]
        public var activations: [LayerKey: ActivationQuantization]
        public var names: [LayerKey: String]
        public var keptFloat: [String]
    }

    /// The first `count` samples of a batch (rounded to the model's fixed batch, if it has one).
    public static func firstSamples(_ samples: Tensor, count: Int, graph: Graph) -> Tensor {
        var n = max(1, min(count, samples.shape[0]))
        if let fixed = graph.inputs.first?.shape?.first?.value { n = fixed }
        n = min(n, samples.shape[0])
        let per = samples.count / max(samples.shape[0], 1)
        let t = Tensor(zeros: .float32, shape: [n] + Array(samples.shape.dropFirst()))
        t.floatPointer.update(from: samples.floatPointer, count: n * per)
        return t
    }

    /// Resolves user-given layer names to keys, or says which names exist.
    public static func keys(for names: [String], in graph: Graph) throws -> Set<LayerKey> {
        let all = Int8Lowering.layerNames(graph)
        var keys = Set<LayerKey>()
        for name in names {
            let matches = all.filter { $0.value == name || $0.value.hasPrefix(name + ".") }
            guard !matches.isEmpty else {
                let known = all.values.sorted().prefix(6).joined(separator: ", ")
                throw CNXError("--keep-float: no layer is called '\(name)'; layers are named like \(known), …")
            }
            keys.formUnion(matches.keys)
        }
        return keys
    }

    public static func quantize(_ graph: Graph, calibration: Tensor, options: Options = Options()) throws -> Result {
        guard graph.nodes.contains(where: { $0.op == .block }) else {
            throw CNXError("no fused ConvNeXt blocks to quantize: int8 needs a model the converter recognises")
        }
        let model = try Model(graph: graph, threads: options.threads)
        let activations = try Calibrator.calibrate(model: model, samples: calibration, method: options.method,
                                                   percentile: options.percentile, progress: options.progress)
        let keep = try keys(for: options.keepFloat, in: graph)
        var quantized = graph
        try Int8Lowering.apply(&quantized, activations: activations, keepFloat: keep)
        let names = Int8Lowering.layerNames(graph)
        let total = activations.count, int8 = total - keep.count
        let metadata: [String: MetadataValue] = [
            MetadataKey.quantizationDescription: .string("int8: weights symmetric per output channel, activations u8 per tensor with a zero point; \(int8) of \(total) pointwise layers int8; depthwise 7x7, LayerNorm, GELU, GRN, stem, downsample and head float32"),
            "quantization.method": .string(options.method.rawValue),
            "quantization.samples": .int(Int64(calibration.shape.first ?? 0)),
            "quantization.int8_layers": .strings(activations.keys.sorted().filter { !keep.contains($0) }.compactMap { names[$0] }),
            "quantization.float_layers": .strings(keep.sorted().compactMap { names[$0] }),
            "quantization.depthwise": .string("float32"),
        ]
        return Result(graph: quantized, metadata: metadata, activations: activations, names: names,
                      keptFloat: keep.sorted().compactMap { names[$0] })
    }
}
