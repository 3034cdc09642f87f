import CNXFormat
import CNXGraph
import CNXReference
import CNXRuntime
import Foundation

/// Quality of a model's output against a reference output.
public enum OutputError {
    /// Signal-to-quantization-noise ratio in dB, as `CNXRuntime.sqnr` defines it (+infinity
    /// for identical outputs).
    public static func sqnr(_ x: Tensor, _ ref: Tensor) -> Double {
        CNXRuntime.sqnr(x, ref)
    }
}

/// int8 quantization of an optimised (fused) float32 graph: calibrate, lower, describe.
public enum Quantizer {
    public struct Options {
        public var method: CalibrationMethod = .percentile
        public var percentile = 99.99
        /// Quantize the head's layers too. Off by default: the head is a few hundredths of a percent
        /// of the work, and its input is one row per image, so its range rests on as many values
        /// per channel as there are calibration images; an image past that range is clipped at
        /// the very end of the network, where nothing dilutes the error.
        public var quantizeHead = false
        /// The weights of the GEMM layers int8 leaves unquantized by default, the stem and (unless
        /// `quantizeHead`) the head: stored in this half precision (nil: float32). bfloat16 by
        /// default: together about 3% of ConvNeXt-T's int8 time on a CPU with AVX512_BF16 (the
        /// stem's float32 GEMM, the classifier's weight read once per image), for about 0.3 dB of
        /// output SQNR. Layers named in `keepFloat` (`stem`, `head`) stay float32.
        public var endsPrecision: DType? = .bfloat16
        /// Rescale the input channels of the layers a norm feeds (SmoothQuant-style), so
        /// that channels of very different magnitude share the per-tensor u8 grid.
        public var equalize = true
        /// Blocks whose hidden activation is rounded to u8 codes of a step of at least
        /// `Int8Lowering.quadraticGELUStep` get the quadratic GELU (within 1.12e-5 of exact GELU).
        /// false: exact GELU everywhere (`--exact-gelu`).
        public var quadraticGELU = true
        /// Layer names (`stages.S.blocks.J.pw1`, or `stages.S.blocks.J` for both) kept float32.
        public var keepFloat: [String] = []
        public var threads: Int?
        public var progress: ((Int, Int) -> Void)?
        /// Measure what quantizing each layer alone does to the output.
        public var sensitivity = false
        /// Keep the most sensitive layers float32 until top-1 agreement with float32 (or, with
        /// labels, accuracy) is within this many percentage points.
        public var maxDrop: Double?
        /// Keep the most sensitive layers float32 (worst first, as the sensitivity ranks them)
        /// until the output's SQNR against float32 on the validation samples is at least this
        /// many dB. nil: every layer int8 (but those kept by name).
        public var minSQNR: Double?
        /// Samples for sensitivity and max-drop (the calibration samples when nil), and labels.
        public var validation: Tensor?
        public var labels: [Int]?
        /// Told of each step of the sensitivity measurement and the --max-drop search (they can
        /// take minutes): `(what, done, total)`; for the search, total is the layers that may
        /// still be kept float32.
        public var step: ((String, Int, Int) -> Void)?
        public init() {}
    }

    /// What quantizing one layer alone does: the output's SQNR against float32, in dB.
    public struct Sensitivity: Sendable {
        public let layer: String
        public let sqnr: Double
    }

    /// Where the accuracy control ended.
    public struct AccuracyCheck: Sendable {
        public var floatAccuracy: Double?
        public var int8Accuracy: Double?
        public var agreement: Double
        public var drop: Double
    }

    public struct Result {
        public var graph: Graph
        public var metadata: [String: MetadataValue]
        public var activations: [LayerKey: ActivationQuantization]
        public var names: [LayerKey: String]
        public var keptFloat: [String]
        /// Worst first, when asked for (or needed by maxDrop).
        public var sensitivity: [Sensitivity] = []
        public var accuracy: AccuracyCheck?
        /// The SQNR on the validation samples where `minSQNR` stopped.
        public var validationSQNR: Double?
    }

    /// The first `count` samples of a batch, as one batch the model takes (exactly its fixed
    /// batch, if it has one).
    public static func firstSamples(_ samples: Tensor, count: Int, graph: Graph) -> Tensor {
        var n = max(1, min(count, samples.shape[0]))
        if let fixed = graph.inputs.first?.shape?.first?.value { n = fixed }
        return leadingSamples(samples, n)
    }

    /// The first `count` samples, rounded down to a whole number of the model's fixed batches
    /// (at least one), for `predictBatches`.
    static func validationSamples(_ samples: Tensor, count: Int, graph: Graph) -> Tensor {
        var n = max(1, min(count, samples.shape[0]))
        if let fixed = graph.inputs.first?.shape?.first?.value, fixed > 0 { n = max(fixed, n - n % fixed) }
        return leadingSamples(samples, n)
    }

    private static func leadingSamples(_ samples: Tensor, _ count: Int) -> Tensor {
        let n = min(count, samples.shape[0])
        let per = samples.count / max(samples.shape[0], 1)
        let t = Tensor(zeros: .float32, shape: [n] + Array(samples.shape.dropFirst()))
        samples.withUnsafeFloats { src in t.withUnsafeMutableFloats { $0.baseAddress!.update(from: src.baseAddress!, count: n * per) } }
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
        let activations = try Calibrator.calibrate(
            model: model, samples: calibration, method: options.method,
            percentile: options.percentile,
            equalize: options.equalize ? Int8Lowering.equalizable(graph) : [:],
            progress: options.progress)
        var keep = try keys(for: options.keepFloat, in: graph)
        let names = Int8Lowering.layerNames(graph)
        // The stem reads the image itself: not quantized, so the int8 error starts after it
        // (both convolutions of an overlapping stem). The head likewise, unless asked for (see
        // quantizeHead). Both get `endsPrecision` weights.
        let named = keep
        keep.formUnion(names.filter { $0.value == "stem" || $0.value.hasPrefix("stem.") }.keys)
        if !options.quantizeHead { keep.formUnion(names.filter { $0.value == "head" || $0.value.hasPrefix("head.") }.keys) }
        // The stem and head the quantizer keeps (not those named), in half precision when asked.
        let ends = options.endsPrecision == nil ? [] : keep.subtracting(named)
        /// The int8 graph with `keep` unquantized, its ends in half precision.
        func lowered(keeping keep: Set<LayerKey>) throws -> Graph {
            var g = graph
            try Int8Lowering.apply(&g, activations: activations, keepFloat: keep)
            if options.quadraticGELU { try Int8Lowering.quadraticGELU(&g) }
            if let dtype = options.endsPrecision, !ends.isEmpty { try HalfPrecisionLowering.apply(&g, to: dtype, only: ends) }
            return g
        }
        var sensitivity: [Sensitivity] = []
        var accuracy: AccuracyCheck?
        var validationSQNR: Double?
        if options.sensitivity || options.maxDrop != nil || options.minSQNR != nil {
            let samples = options.validation ?? validationSamples(calibration, count: 8, graph: graph)
            let reference = try predictBatches(model, samples)
            var scored: [(LayerKey, Double)] = []
            let candidates = activations.keys.sorted().filter { !keep.contains($0) }
            for key in candidates {
                var one = graph
                try Int8Lowering.apply(&one, activations: activations, keepFloat: Set(activations.keys).subtracting([key]))
                let y = try predictBatches(try Model(graph: one, threads: options.threads), samples)
                scored.append((key, OutputError.sqnr(y, reference)))
                options.step?(
                    String(format: "sensitivity of %@: %.1f dB", names[key] ?? "?", scored.last!.1), scored.count, candidates.count)
            }
            scored.sort { $0.1 < $1.1 }
            sensitivity = scored.map { Sensitivity(layer: names[$0.0] ?? "node \($0.0.node) layer \($0.0.layer)", sqnr: $0.1) }
            if let target = options.minSQNR {
                var order = scored.map(\.0)[...]
                while true {
                    let trial = try lowered(keeping: keep)
                    let sqnr = OutputError.sqnr(try predictBatches(try Model(graph: trial, threads: options.threads), samples), reference)
                    validationSQNR = sqnr
                    guard sqnr < target, let next = order.popFirst() else { break }
                    keep.insert(next)
                }
            }
            if let maxDrop = options.maxDrop {
                let floatTop = top1(reference)
                let floatAcc = options.labels.map { accuracyOf(floatTop, $0) }
                var order = scored.map(\.0)[...]
                while true {
                    let trial = try lowered(keeping: keep)
                    let top = top1(try predictBatches(try Model(graph: trial, threads: options.threads), samples))
                    let agreement = zip(top, floatTop).filter { $0 == $1 }.count
                    let agree = Double(agreement) / Double(max(top.count, 1))
                    let int8Acc = options.labels.map { accuracyOf(top, $0) }
                    let drop = (floatAcc.map { f in (f - (int8Acc ?? 0)) * 100 }) ?? (100 - agree * 100)
                    accuracy = AccuracyCheck(floatAccuracy: floatAcc, int8Accuracy: int8Acc, agreement: agree, drop: drop)
                    let kept = keep.subtracting(names.filter { $0.value == "stem" }.keys).count
                    options.step?(
                        String(
                            format: "max-drop: %d layer%@ float32, drop %.2f points (%@ %g)", kept, kept == 1 ? "" : "s", drop,
                            drop > maxDrop ? "above" : "within", maxDrop), kept, scored.count)
                    guard drop > maxDrop, let next = order.popFirst() else { break }
                    keep.insert(next)
                }
            }
        }
        let quantized = try lowered(keeping: keep)
        let floatKept = keep.subtracting(ends)
        let total = activations.count
        let blocks = quantized.nodes.filter { $0.op == .block }.count
        let bf16Depthwise = try quantized.nodes.filter {
            guard $0.op == .block, case .block(let op) = try FusedPayload($0, in: quantized) else { return false }
            return op.depthwise.onBFloat16
        }.count
        let depthwise =
            bf16Depthwise == 0
            ? "depthwise float32"
            : bf16Depthwise == blocks
                ? "depthwise bfloat16 (inputs rounded, float32 sums)"
                : "depthwise bfloat16 (inputs rounded, float32 sums) in the \(bf16Depthwise) blocks whose pointwise layers are int8, float32 in the other \(blocks - bf16Depthwise)"
        let quadratic = try Int8Lowering.geluBlocks(quantized).quadratic
        let geluText =
            quadratic == 0
            ? ""
            : "; GELU by the quadratic table (within 1.12e-5) in the \(quadratic == blocks ? "" : "\(quadratic) of the ")\(quadratic == blocks ? "blocks" : "\(blocks) blocks") (their hidden u8 step at least \(Int8Lowering.quadraticGELUStep))"
        let endNames = ends.sorted().compactMap { names[$0] }
        // The stem and head as the description names them: in half precision, or float32.
        func listed(_ n: [String]) -> String { n.count <= 1 ? n.joined() : n.dropLast().joined(separator: ", ") + " and " + n.last! }
        let floatEnds = floatKept.sorted().compactMap { names[$0] }.filter { $0.hasPrefix("stem") || $0.hasPrefix("head") }
        let halfText = endNames.isEmpty ? "" : "; \(listed(endNames)) \(options.endsPrecision!.name) weights (float32 sums)"
        let endsText = floatEnds.isEmpty ? "" : ", \(listed(floatEnds))"
        var metadata: [String: MetadataValue] = [
            MetadataKey.quantizationDescription: .string(
                "int8: weights symmetric per output channel, activations u8 per tensor with a zero point; \(total - keep.count) of \(total) GEMM layers int8 (pointwise, downsample\(options.quantizeHead ? ", head" : "")); input channels of the layers a norm feeds equalized where that lowers the expected error; \(depthwise)\(halfText)\(geluText); norms, activations, GRN, residual stream\(endsText) float32"
            ),
            MetadataKey.quantizationMethod: .string(options.method.rawValue),
            MetadataKey.quantizationSamples: .int(Int64(calibration.shape.first ?? 0)),
            MetadataKey.quantizationInt8Layers: .strings(activations.keys.sorted().filter { !keep.contains($0) }.compactMap { names[$0] }),
            MetadataKey.quantizationFloatLayers: .strings(floatKept.sorted().compactMap { names[$0] }),
            MetadataKey.quantizationDepthwise: .string(
                bf16Depthwise == 0 ? "float32" : bf16Depthwise == blocks ? "bfloat16" : "bfloat16 and float32"),
        ]
        if let dtype = options.endsPrecision, !ends.isEmpty { metadata[MetadataKey.quantizationHalfLayers(dtype)] = .strings(endNames) }
        if let gelu = try Int8Lowering.geluSummary(quantized) { metadata[MetadataKey.quantizationGELU] = .string(gelu) }
        return Result(
            graph: quantized, metadata: metadata, activations: activations, names: names,
            keptFloat: floatKept.sorted().compactMap { names[$0] }, sensitivity: sensitivity, accuracy: accuracy,
            validationSQNR: validationSQNR)
    }

    /// Runs `samples` through `model` in batches the model accepts; returns the first output.
    static func predictBatches(_ model: Model, _ samples: Tensor) throws -> Tensor {
        let n = samples.shape[0], per = samples.count / max(n, 1)
        let batch = model.graph.inputs.first?.shape?.first?.value ?? min(n, 16)
        var outputs: [Float] = []
        var cols = 0
        var start = 0
        while start + batch <= n || (start < n && model.graph.inputs.first?.shape?.first?.value == nil) {
            let count = min(batch, n - start)
            let chunk = Tensor(zeros: .float32, shape: [count] + Array(samples.shape.dropFirst()))
            samples.withUnsafeFloats { src in
                chunk.withUnsafeMutableFloats { $0.baseAddress!.update(from: src.baseAddress! + start * per, count: count * per) }
            }
            let y = try model.predict(chunk)
            cols = y.count / count
            outputs += y.floats
            start += count
        }
        return Tensor(floats: outputs, shape: [outputs.count / max(cols, 1), cols])
    }

    static func top1(_ logits: Tensor) -> [Int] {
        let cols = logits.shape.last ?? 1
        return (0..<(logits.count / max(cols, 1))).map { r in
            var best = 0
            logits.withUnsafeFloats { l in for c in 1..<cols where l[r * cols + c] > l[r * cols + best] { best = c } }
            return best
        }
    }

    static func accuracyOf(_ predictions: [Int], _ labels: [Int]) -> Double {
        let n = min(predictions.count, labels.count)
        return n == 0 ? 0 : Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(n)
    }
}
