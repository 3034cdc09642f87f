import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXQuantize
import Foundation

/// Options shared by `quantize` and `convert --int8`.
struct Int8Options: ParsableArguments {
    @Option(name: .long, help: "Calibration data: a float32 .npy batch N x 3 x H x W, preprocessed as the model expects.")
    var calibration: String?

    @Option(name: .long, help: "How activation ranges are chosen: minmax, percentile (default) or entropy.")
    var method: String = CalibrationMethod.percentile.rawValue

    @Option(name: .long, help: "Percentile for --method percentile (default 99.99).")
    var percentile: Double = 99.99

    @Option(name: .long, parsing: .upToNextOption, help: "Layers to keep in float32, e.g. stages.2.blocks.0.pw2 or stages.2.blocks.0 (both layers).")
    var keepFloat: [String] = []

    func settings(threads: Int?) throws -> (calibration: Tensor, options: Quantizer.Options) {
        guard let calibration else { throw ValidationError("--int8 needs --calibration DATA (a .npy batch of preprocessed samples)") }
        guard let m = CalibrationMethod(rawValue: method) else {
            throw ValidationError("--method must be one of \(CalibrationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let samples = try NPY.read(path: calibration)
        guard samples.dtype == .float32, samples.shape.count == 4 else {
            throw CNXError("\(calibration): calibration data must be float32 N x 3 x H x W, got \(samples.dtype.name) \(samples.shape)")
        }
        var options = Quantizer.Options()
        options.method = m
        options.percentile = percentile
        options.keepFloat = keepFloat
        options.threads = threads
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

    func validate() throws {
        guard int8 else { throw ValidationError("say --int8: it is the only quantization this version offers") }
    }

    func run() throws {
        try reportingErrors {
            var options = Converter.Options()
            options.int8 = try quantization.settings(threads: threads)
            let r = try Converter.convert(input: input, output: output, options: options)
            printInt8Report(r, output: output)
        }
    }
}

func printInt8Report(_ r: Converter.Report, output: String) {
    if let a = r.architecture { print("model:     \(a.family) \(a.variant ?? "(custom)"), depths \(a.depths), dims \(a.dims)") }
    if let s = r.quantizeSeconds { print(String(format: "quantized: in %.2f s", s)) }
    if let q = r.int8SQNR { print(String(format: "int8:      output SQNR %.1f dB against float32 on calibration samples", q)) }
    print("float32:   \(r.keptFloat.isEmpty ? "no pointwise layer kept in float32" : r.keptFloat.joined(separator: ", "))")
    print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
}
