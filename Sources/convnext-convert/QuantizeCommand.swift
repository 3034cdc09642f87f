import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXQuantize
import CNXValidate
import Foundation

/// Options shared by `quantize` and `convert --int8`.
struct Int8Options: ParsableArguments {
    @Option(name: .long, help: "Calibration data: a float32 .npy batch N x 3 x H x W, preprocessed as the model expects, or a folder of JPEG/PNG images (preprocessed as the model's metadata says, else ImageNet's; at most 1024 are used).")
    var calibration: String?

    @Option(name: .long, help: "How activation ranges are chosen: minmax, percentile (default) or entropy.")
    var method: String = CalibrationMethod.percentile.rawValue

    @Option(name: .long, help: "Percentile for --method percentile (default 99.99).")
    var percentile: Double = 99.99

    @Option(name: .long, parsing: .upToNextOption, help: "Layers to keep in float32, e.g. stages.2.blocks.0.pw2 or stages.2.blocks.0 (both layers).")
    var keepFloat: [String] = []

    @Flag(name: .long, help: "Print, worst first, the output SQNR when each layer alone is int8.")
    var sensitivity = false

    @Option(name: .long, help: "Keep the most sensitive layers float32 until top-1 agreement with float32 (accuracy, with --labels) is within X percentage points.")
    var maxDrop: Double?

    @Option(name: .long, help: "Validation data for --sensitivity and --max-drop: a float32 .npy batch (default: calibration samples).")
    var validation: String?

    @Option(name: .long, help: "Labels of the validation samples: a .npy of integer class ids.")
    var labels: String?

    /// Calibration samples from a `.npy` batch, or from a folder of images preprocessed as the
    /// model's metadata says (ImageNet's settings otherwise, at the model's input size).
    func samples(model: String?) throws -> Tensor {
        guard let calibration else { throw ValidationError("--int8 needs --calibration DATA (a .npy batch, or a folder of images)") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: calibration, isDirectory: &isDirectory), isDirectory.boolValue, let model else {
            return try NPY.read(path: calibration)
        }
        let loaded = try ModelLoader.load(model)
        var preprocessing = Preprocessing.imagenet.updated(metadata: loaded.metadata)
        if let shape = loaded.graph.inputs.first?.shape, shape.count == 4, let h = shape[2].value, let w = shape[3].value {
            (preprocessing.height, preprocessing.width) = (h, w)
        }
        let data = try Dataset.images(calibration, preprocessing: preprocessing)
        let n = min(data.count, 1024)
        guard n > 0 else { throw CNXError("\(calibration): no images to calibrate with") }
        return try data.batch(0..<n)
    }

    func settings(threads: Int?, model: String? = nil) throws -> (calibration: Tensor, options: Quantizer.Options) {
        guard let m = CalibrationMethod(rawValue: method) else {
            throw ValidationError("--method must be one of \(CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let samples = try self.samples(model: model)
        let calibration = self.calibration ?? ""
        guard samples.dtype == .float32, samples.shape.count == 4 else {
            throw CNXError("\(calibration): calibration data must be float32 N x 3 x H x W, got \(samples.dtype.name) \(samples.shape)")
        }
        var options = Quantizer.Options()
        options.method = m
        options.percentile = percentile
        options.keepFloat = keepFloat
        options.threads = threads
        options.sensitivity = sensitivity
        options.maxDrop = maxDrop
        if let validation {
            let v = try NPY.read(path: validation)
            guard v.dtype == .float32, v.shape.count == 4 else { throw CNXError("\(validation): validation data must be float32 N x 3 x H x W") }
            options.validation = v
        }
        if let labels {
            let l = try NPY.read(path: labels)
            guard l.dtype == .int64 else { throw CNXError("\(labels): labels must be integer class ids") }
            options.labels = l.int64s.map { Int($0) }
        }
        if maxDrop != nil && validation == nil && labels != nil {
            throw ValidationError("--labels goes with --validation DATA")
        }
        if isatty(2) != 0 {
            options.progress = { done, total in
                let width = 30, filled = width * done / max(total, 1)
                FileHandle.standardError.write(Data("\rcalibrating [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total)\(done == total ? "\n" : "")".utf8))
            }
        }
        return (samples, options)
    }
}

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model to int8 (weights per channel, activations calibrated) and write a .cnx.",
        discussion: """
        IN may be an .onnx or a float32 .cnx. The pointwise layers of every block become int8
        (u8 activations x s8 weights, the form VNNI dot products take); LayerNorm, GELU, GRN, the
        depthwise convolutions and the residual stream stay float32.
          convnext-convert quantize --int8 model.onnx model.int8.cnx --calibration calib.npy
        """)

    @Flag(name: .long, help: "Quantize to int8 (the only scheme so far; required).")
    var int8 = false

    @Argument(help: "The model to quantize (.onnx or float32 .cnx).")
    var input: String

    @Argument(help: "The .cnx file to write.")
    var output: String

    @OptionGroup var quantization: Int8Options

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "With --sensitivity (or --max-drop): also write the per-layer sensitivity as a self-contained HTML page to this file.")
    var report: String?

    func validate() throws {
        guard int8 else { throw ValidationError("say --int8: it is the only quantization this version offers") }
        if report != nil && !quantization.sensitivity && quantization.maxDrop == nil {
            throw ValidationError("--report draws the per-layer sensitivity: add --sensitivity")
        }
    }

    func run() throws {
        try reportingErrors {
            if let report { try checkReportPath(report) }
            var options = Converter.Options()
            options.int8 = try quantization.settings(threads: threads, model: input)
            let r = try Converter.convert(input: input, output: output, options: options)
            printInt8Report(r, output: output)
            if let report, let settings = options.int8 { try writeSensitivityReport(report, r, settings) }
        }
    }
}

extension Quantize {
    /// The HTML page of `--report`: the sensitivity chart, the layers kept float32 marked.
    func writeSensitivityReport(_ path: String, _ r: Converter.Report, _ settings: (calibration: Tensor, options: Quantizer.Options)) throws {
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
        var page = HTMLReport.Sensitivity(model: try facts(input), layers: r.sensitivity.map { ($0.layer, $0.sqnr) }, keptFloat: r.keptFloat)
        page.output = try facts(output)
        (page.int8SQNR, page.method, page.calibrationSamples, page.measuredOn) = (r.int8SQNR, settings.options.method.rawValue, calibration, measuredOn)
        page.accuracy = r.accuracy.map { ($0.floatAccuracy, $0.int8Accuracy, $0.agreement, $0.drop) }
        (page.maxDrop, page.command) = (settings.options.maxDrop, commandLine())
        try HTMLReport.write(HTMLReport.sensitivity(page), to: path)
    }
}

func printInt8Report(_ r: Converter.Report, output: String) {
    if !r.sensitivity.isEmpty {
        print("sensitivity (output SQNR with only this layer int8, worst first):")
        for s in r.sensitivity { print(String(format: "  %-28@ %6.1f dB", s.layer as NSString, s.sqnr)) }
    }
    if let a = r.accuracy {
        if let f = a.floatAccuracy, let q = a.int8Accuracy {
            print(String(format: "accuracy:  float32 %.2f%%, int8 %.2f%% (drop %.2f points), top-1 agreement %.2f%%", f * 100, q * 100, a.drop, a.agreement * 100))
        } else {
            print(String(format: "agreement: top-1 agreement with float32 %.2f%%", a.agreement * 100))
        }
    }
    if let a = r.architecture { print("model:     \(a.family) \(a.variant ?? "(custom)"), depths \(a.depths), dims \(a.dims)") }
    if let s = r.quantizeSeconds { print(String(format: "quantized: in %.2f s", s)) }
    if let q = r.int8SQNR { print(String(format: "int8:      output SQNR %.1f dB against float32 on calibration samples", q)) }
    print("float32:   \(r.keptFloat.isEmpty ? "no pointwise layer kept in float32" : r.keptFloat.joined(separator: ", "))")
    print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
}
