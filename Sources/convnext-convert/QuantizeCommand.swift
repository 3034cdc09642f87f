import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXQuantize
import CNXValidate
import Foundation

/// Options shared by `quantize` and `convert --int8`.
struct Int8Options: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Calibration data: a float32 .npy batch N x 3 x H x W, preprocessed as the model expects, or a folder of JPEG/PNG images (preprocessed as --size/--mean/... or the model's metadata say, else as ImageNet's; at most 1024 are used).",
            valueName: "DATA"))
    var calibration: String?

    @Option(name: .long, help: "How activation ranges are chosen: minmax, percentile, entropy or mse.")
    var method: String = CalibrationMethod.percentile.rawValue

    @Option(name: .long, help: "Percentile for --method percentile.")
    var percentile: Double = 99.99

    @Option(
        name: .long, parsing: .upToNextOption,
        help: ArgumentHelp(
            "Layers to keep in float32, named as inspect, --sensitivity and validate --per-layer name them: stages.2.blocks.0.pw2, stages.2.blocks.0 (both its layers), stages.1.downsample, head.",
            valueName: "LAYER"))
    var keepFloat: [String] = []

    @Flag(name: .long, help: "Print, worst first, the output SQNR when each layer alone is int8.")
    var sensitivity = false

    @Flag(
        name: .long,
        help:
            "Keep exact GELU in every block. By default a block whose hidden activation is rounded to u8 codes of a step of at least \(Int8Lowering.quadraticGELUStep) gets the quadratic GELU (within 1.12e-5 of exact, a thousandth of that step): ConvNeXt-T 2% faster on AVX-512, 1.5% slower where the int8 path is AVX2."
    )
    var exactGelu = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Keep the most sensitive layers float32 until top-1 agreement with float32 (accuracy, with --labels) is within X percentage points.",
            valueName: "X"))
    var maxDrop: Double?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Validation data for --sensitivity and --max-drop: a float32 .npy batch (default: the first calibration samples).",
            valueName: "DATA"))
    var validation: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Class names, one a line, recorded in the .cnx; or, a .npy, the class ids of the --validation samples.", valueName: "FILE"))
    var labels: String?

    func validate() throws {
        guard CalibrationMethod(rawValue: method) != nil else {
            throw ValidationError(
                "--method must be one of \(CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", ")), not '\(method)'")
        }
        guard percentile > 0 && percentile <= 100 else { throw ValidationError("--percentile must be in (0, 100]") }
        if let maxDrop, !(maxDrop >= 0 && maxDrop <= 100) { throw ValidationError("--max-drop must be between 0 and 100") }
        if validationLabels != nil && validation == nil { throw ValidationError("--labels IDS.npy goes with --validation DATA") }
    }

    /// Calibration samples from a `.npy` batch, or from a folder of images preprocessed as the
    /// model's metadata says (ImageNet's settings otherwise, at the model's input size).
    func samples(model: String?, recorded: [String: MetadataValue] = [:]) throws -> Tensor {
        guard let calibration else { throw ValidationError("--int8 needs --calibration DATA (a .npy batch, or a folder of images)") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: calibration, isDirectory: &isDirectory), isDirectory.boolValue, let model else {
            return try NPY.read(path: calibration)
        }
        let loaded = try ModelLoader.load(model)
        var preprocessing = Preprocessing.imagenet.updated(metadata: loaded.metadata).updated(metadata: recorded)
        if let shape = loaded.graph.inputs.first?.shape, shape.count == 4, let h = shape[2].value, let w = shape[3].value {
            (preprocessing.height, preprocessing.width) = (h, w)
        }
        let data = try Dataset.images(calibration, preprocessing: preprocessing)
        let n = min(data.count, 1024)
        guard n > 0 else { throw CNXError("\(calibration): no images to calibrate with") }
        return try data.batch(0..<n)
    }

    func settings(threads: Int?, model: String? = nil, recorded: [String: MetadataValue] = [:]) throws -> (
        calibration: Tensor, options: Quantizer.Options
    ) {
        guard let m = CalibrationMethod(rawValue: method) else {
            throw ValidationError("--method must be one of \(CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let samples = try self.samples(model: model, recorded: recorded)
        let calibration = self.calibration ?? ""
        guard samples.dtype == .float32, samples.shape.count == 4 else {
            throw CNXError("\(calibration): calibration data must be float32 N x 3 x H x W, got \(samples.dtype.name) \(samples.shape)")
        }
        var options = Quantizer.Options()
        options.method = m
        options.percentile = percentile
        options.keepFloat = keepFloat
        options.quadraticGELU = !exactGelu
        options.threads = threads
        options.sensitivity = sensitivity
        options.maxDrop = maxDrop
        if let validation {
            let v = try NPY.read(path: validation)
            guard v.dtype == .float32, v.shape.count == 4 else {
                throw CNXError("\(validation): validation data must be float32 N x 3 x H x W")
            }
            options.validation = v
        }
        if let labels = validationLabels {
            let l = try NPY.read(path: labels)
            guard l.dtype == .int64 else { throw CNXError("\(labels): labels must be integer class ids") }
            options.labels = l.int64s.map { Int($0) }
        }
        if let maxDrop {
            // One sample of the data the search measures on is worth 100 / n points: a finer
            // budget can only be met by a drop of zero.
            let n = options.validation?.shape.first ?? min(8, samples.shape[0])
            let step = 100 / Double(max(n, 1))
            if maxDrop > 0 && maxDrop < step {
                note(
                    String(
                        format: "note: --max-drop %g is finer than one sample of the %d %@ (%.2f points each): it asks for no drop at all",
                        maxDrop, n,
                        validation == nil ? "calibration samples it measures on (give --validation DATA)" : "validation samples", step))
            }
        }
        if sensitivity || maxDrop != nil {
            let tty = isatty(2) != 0
            options.step = { what, done, total in
                if what.hasPrefix("max-drop") {
                    FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + what + "\n").utf8))
                } else if tty {
                    FileHandle.standardError.write(
                        Data("\r\u{1B}[Kmeasuring sensitivity \(done)/\(total): \(what)\(done == total ? "\n" : "")".utf8))
                }
            }
            if !tty { note("measuring the sensitivity of each layer (one run of the model per layer)...") }
        }
        if isatty(2) != 0 {
            options.progress = { done, total in
                let width = 30, filled = width * done / max(total, 1)
                FileHandle.standardError.write(
                    Data(
                        "\rcalibrating [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total)\(done == total ? "\n" : "")"
                            .utf8))
            }
        }
        return (samples, options)
    }
}

/// `--bf16` / `--fp16` of `quantize` and `convert`: the GEMM layers' weights stored as bfloat16
/// or float16 (no calibration). Kept apart from the int8 options.
struct HalfPrecisionOptions: ParsableArguments {
    @Flag(
        name: .long,
        help:
            "Store the pointwise, downsample and head weights as bfloat16 (no calibration; the file about half the float32 one). Computed with AVX512_BF16 dot products where the CPU has them, else widened to float32."
    )
    var bf16 = false

    @Flag(name: .long, help: "Store those weights as float16 instead (widened to float32 in the kernel; for CPUs without bfloat16).")
    var fp16 = false

    var dtype: DType? { bf16 ? .bfloat16 : fp16 ? .float16 : nil }
    var flag: String { bf16 ? "--bf16" : "--fp16" }

    func validate() throws {
        if bf16 && fp16 { throw ValidationError("--bf16 and --fp16 are exclusive: say one") }
    }

    /// What the int8 options may not be given with a half precision alone. With --int8 too, the
    /// file is mixed: the layers int8 keeps float32 (but the stem) get half weights instead.
    func check(int8: Bool, _ q: Int8Options) throws {
        guard dtype != nil, !int8 else { return }
        if q.calibration != nil || q.sensitivity || q.maxDrop != nil {
            throw ValidationError(
                "\(flag) needs no calibration: --calibration, --sensitivity and --max-drop are for --int8 (check a \(flag) file with validate --max-drop)"
            )
        }
    }
}

/// The model, outputs, passes and verification lines of the int8 and half-precision reports.
func printModelLines(_ r: Converter.Report) {
    if let a = r.architecture { print("model:     \(a.family) \(a.variant ?? "(custom)"), depths \(a.depths), dims \(a.dims)") }
    print("outputs:   \(describeOutputs(r))")
    print("passes:    \(r.passes.joined(separator: ", "))")
    if let e = r.verificationError {
        print(String(format: "verified:  float32 graph, relative error %.2e against %@", e, r.verifiedAgainst ?? "the original"))
    } else {
        print("verified:  no (--no-verify)")
    }
}

/// The report of a bfloat16 / float16 conversion.
func printHalfReport(_ r: Converter.Report, output: String, dtype: DType) {
    printModelLines(r)
    let layers = r.metadata[MetadataKey.quantizationHalfLayers(dtype)]?.stringsValue ?? []
    print(
        "\(dtype.name): \(layers.count) GEMM layers"
            + (r.halfSQNR.map { String(format: ", output SQNR %.1f dB against float32 on a random input", $0) } ?? ""))
    print("float32:   \(r.keptFloat.isEmpty ? "no GEMM layer" : r.keptFloat.joined(separator: ", "))")
    print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
}

func halfJSON(_ r: Converter.Report, output: String, dtype: DType) -> String {
    JSON.object([
        ("output", .string(output)), ("bytes", .int(r.outputBytes)), ("seconds", .number(r.seconds)),
        ("precision", .string(dtype.name)), ("passes", .array(r.passes.map { .string($0) })),
        ("verification_error", r.verificationError.map { .number(Double($0)) } ?? .null),
        ("sqnr_db", r.halfSQNR.map { .number($0) } ?? .null),
        ("\(dtype.name)_layers", .array((r.metadata[MetadataKey.quantizationHalfLayers(dtype)]?.stringsValue ?? []).map { .string($0) })),
        ("float_layers", .array(r.keptFloat.map { .string($0) })),
    ]).text
}

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model to int8 (weights per channel, activations calibrated) and write a .cnx.",
        discussion: """
            IN is any model the tool reads (.onnx, a PyTorch checkpoint, a float32 .cnx). The \
            pointwise layers of every block, the downsample layers and the head become int8 (u8 \
            activations x s8 weights, the form VNNI dot products take); LayerNorm, GELU, GRN, the \
            depthwise convolutions and the residual stream stay float32. Layers are named \
            as inspect, --sensitivity and validate --per-layer name them: stem, \
            stages.S.downsample, stages.S.blocks.J (.pw1, .pw2), head.

              convnext-convert quantize --int8 m.onnx m.int8.cnx --calibration calib.npy
              convnext-convert quantize --int8 m.onnx m.int8.cnx --calibration images/ \\
                  --sensitivity --json

            --bf16 (or --fp16) instead stores the weights of the same layers as bfloat16 (float16) \
            without calibration; the stem, depthwise convolutions, norms, GELU and the residual \
            stream stay float32, and --keep-float keeps named layers float32. --int8 --bf16 makes a \
            mixed file: the layers int8 keeps float32 (--keep-float, --max-drop) get bfloat16 \
            weights instead. --int8 alone already gives the stem and head (which it does not \
            quantize) bfloat16 weights, about 3% of ConvNeXt-T's int8 time for 0.3 dB of SQNR; \
            --keep-float stem,head keeps them float32:

              convnext-convert quantize --bf16 m.onnx m.bf16.cnx
              convnext-convert quantize --int8 --bf16 m.onnx m.mix.cnx --calibration c.npy
            """)

    @Flag(name: .long, help: "Quantize to int8 (or say --bf16 / --fp16).")
    var int8 = false

    @OptionGroup var files: ConversionOptions

    @OptionGroup(title: "Half-precision weights (instead of --int8)")
    var half: HalfPrecisionOptions

    @OptionGroup var quantization: Int8Options

    @Option(
        name: .long,
        help: "With --sensitivity (or --max-drop): also write the per-layer sensitivity as a self-contained HTML page to this file.")
    var report: String?

    @Flag(name: .long, help: "Print one JSON object (the report, with the sensitivity of each layer) instead of text.")
    var json = false

    func validate() throws {
        try half.check(int8: int8, quantization)
        if half.dtype != nil && !int8 { return }
        guard int8 else { throw ValidationError("say --int8, --bf16 or --fp16") }
        guard quantization.calibration != nil else {
            throw ValidationError("--int8 needs --calibration DATA (a .npy batch, or a folder of images)")
        }
        if report != nil && !quantization.sensitivity && quantization.maxDrop == nil {
            throw ValidationError("--report draws the per-layer sensitivity: add --sensitivity")
        }
    }

    func run() throws {
        try reportingErrors {
            let (input, output) = (files.input, files.output)
            let line = StageLine()
            defer { line.clear() }
            var options = try files.converterOptions(reads: quantization.reads, classNamesFile: quantization.classNamesFile, line: line)
            if let report {
                try checkReportPath(report)
                try OutputGuard.check(
                    output: report, kind: .html,
                    reads: [ReadFile(input, role: "the input model")] + quantization.reads
                        + [ReadFile(output, role: "the output model")], force: files.force)
            }
            if let dtype = half.dtype { options.halfPrecision = (dtype, int8 ? [] : quantization.keepFloat) }
            if int8 { options.int8 = try quantization.settings(threads: files.threads, model: input, recorded: options.recorded) }
            let r = try Converter.convert(input: input, output: output, options: options)
            line.clear()
            if let dtype = half.dtype, !int8 {
                if json { print(halfJSON(r, output: output, dtype: dtype)) } else { printHalfReport(r, output: output, dtype: dtype) }
                return
            }
            if json { print(int8JSON(r, output: output)) } else { printInt8Report(r, output: output) }
            if let report, let settings = options.int8 { try writeSensitivityReport(report, r, settings) }
        }
    }
}

extension Quantize {
    /// The HTML page of `--report`: the sensitivity chart, the layers kept float32 marked.
    func writeSensitivityReport(_ path: String, _ r: Converter.Report, _ settings: (calibration: Tensor, options: Quantizer.Options)) throws
    {
        func facts(_ file: String) throws -> ModelFacts {
            let l = try ModelLoader.load(file)
            return .of(path: file, file: ModelLoader.sourceFile(file), format: l.format, graph: l.graph, metadata: l.metadata, runtime: "")
        }
        let calibration = settings.calibration.shape.first ?? 0
        let measuredOn: String
        if let v = settings.options.validation, let validation = quantization.validation {
            measuredOn = "\(validation) (\(v.shape.first ?? 0) samples)"
        } else {
            measuredOn = "the first \(min(8, calibration)) calibration samples"
        }
        var page = HTMLReport.Sensitivity(
            model: try facts(files.input), layers: r.sensitivity.map { ($0.layer, $0.sqnr) }, keptFloat: r.keptFloat)
        page.output = try facts(files.output)
        page.halfLayers = HalfPrecisionLowering.dtypes.flatMap { dtype in
            (r.metadata[MetadataKey.quantizationHalfLayers(dtype)]?.stringsValue ?? []).map { ($0, dtype.name) }
        }
        (page.int8SQNR, page.method, page.calibrationSamples, page.measuredOn) = (
            r.int8SQNR, settings.options.method.rawValue, calibration, measuredOn
        )
        page.accuracy = r.accuracy.map { ($0.floatAccuracy, $0.int8Accuracy, $0.agreement, $0.drop) }
        (page.maxDrop, page.command) = (settings.options.maxDrop, commandLine())
        try HTMLReport.write(HTMLReport.sensitivity(page), to: path)
    }
}

func printInt8Report(_ r: Converter.Report, output: String) {
    if !r.sensitivity.isEmpty {
        print("sensitivity (output SQNR with only this layer int8, worst first):")
        let width = max(28, (r.sensitivity.map(\.layer.count).max() ?? 0) + 2)
        for s in r.sensitivity {
            print("  " + s.layer.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: "%6.1f dB", s.sqnr))
        }
    }
    if let a = r.accuracy {
        if let f = a.floatAccuracy, let q = a.int8Accuracy {
            print(
                String(
                    format: "accuracy:  float32 %.2f%%, int8 %.2f%% (drop %.2f points), top-1 agreement %.2f%%", f * 100, q * 100, a.drop,
                    a.agreement * 100))
        } else {
            print(String(format: "agreement: top-1 agreement with float32 %.2f%%", a.agreement * 100))
        }
    }
    printModelLines(r)
    if let s = r.quantizeSeconds { print(String(format: "quantized: in %.2f s", s)) }
    if let q = r.int8SQNR { print(String(format: "int8:      output SQNR %.1f dB against float32 on calibration samples", q)) }
    for dtype in HalfPrecisionLowering.dtypes {
        if let layers = r.metadata[MetadataKey.quantizationHalfLayers(dtype)]?.stringsValue {
            print("\(dtype.name): \(layers.joined(separator: ", "))")
        }
    }
    print("float32:   \(r.keptFloat.isEmpty ? "no layer kept in float32" : r.keptFloat.joined(separator: ", "))")
    print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
}

/// What a conversion wrote, for the report: `logits [N, 10] (10 classes)`, or a backbone's
/// `stage1 [N, 16, H/8, W/8], ... (stages 1, 2; no classifier)`.
func describeOutputs(_ r: Converter.Report) -> String {
    let list = r.outputs.map { o in "\(o.name) \(o.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "[?]")" }
        .joined(separator: ", ")
    if let f = r.features { return "\(list) (backbone: stages \(f.map(String.init).joined(separator: ", ")); no classifier)" }
    if let c = r.classes { return "\(list) (\(c) classes)" }
    return list
}

/// The int8 report as one JSON object.
func int8JSON(_ r: Converter.Report, output: String) -> String {
    var o: [(String, JSON)] = [("output", .string(output)), ("bytes", .int(r.outputBytes)), ("seconds", .number(r.seconds))]
    if let a = r.architecture {
        o.append(
            (
                "model",
                .object([
                    ("family", .string(a.family)), ("variant", a.variant.map { .string($0) } ?? .null),
                    ("depths", .array(a.depths.map { .int($0) })), ("dims", .array(a.dims.map { .int($0) })),
                    ("classes", r.classes.map { .int($0) } ?? .null),
                ])
            ))
    }
    o.append(("outputs", .array(r.outputs.map { .string($0.name) })))
    o.append(("features", r.features.map { .array($0.map { .int($0) }) } ?? .null))
    o.append(("passes", .array(r.passes.map { .string($0) })))
    o.append(("verification_error", r.verificationError.map { .number(Double($0)) } ?? .null))
    o.append(("int8_sqnr_db", r.int8SQNR.map { .number($0) } ?? .null))
    o.append(("float_layers", .array(r.keptFloat.map { .string($0) })))
    o.append(("int8_layers", .array((r.metadata[MetadataKey.quantizationInt8Layers]?.stringsValue ?? []).map { .string($0) })))
    o.append(("sensitivity", .array(r.sensitivity.map { .object([("layer", .string($0.layer)), ("sqnr_db", .number($0.sqnr))]) })))
    if let a = r.accuracy {
        o.append(
            (
                "accuracy",
                .object([
                    ("float32", a.floatAccuracy.map { .number($0) } ?? .null),
                    ("int8", a.int8Accuracy.map { .number($0) } ?? .null),
                    ("top1_agreement", .number(a.agreement)), ("drop_points", .number(a.drop)),
                ])
            ))
    }
    return JSON.object(o).text
}
