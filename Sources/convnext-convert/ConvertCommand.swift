import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXImport
import CNXPasses
import CNXRuntime
import Foundation

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Optimise a model (fold LayerNorm, GELU, layer scale; fuse blocks) and write a .cnx file.",
        discussion: """
            The written file is run against the original on a random input (a backbone's stage \
            outputs against the original's tensors there) before it is put in place: it appears \
            whole or not at all. The output may not be a file the command reads, and an existing \
            file is replaced only by a .cnx over a .cnx (--force allows any other).

              convnext-convert model.onnx model.cnx --mean 0.5 --std 0.5 --labels names.txt
              convnext-convert classifier.onnx backbone.cnx --features 1,2,3
            """)

    @OptionGroup var files: ConversionOptions

    @Flag(name: .long, help: "Skip the check of the optimised graph against the original.")
    var noVerify = false

    @Flag(name: .shortAndLong, help: "Print what each pass did.")
    var verbose = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Print the graph after the named pass (\(Convert.passNames)).",
            valueName: "PASS"))
    var dumpAfter: String?

    /// The standard pipeline's pass names, in order, each once: what `--dump-after` takes.
    static var passNames: String { Pipeline.standard.passNames.joined(separator: ", ") }

    @Flag(name: .long, help: "Also quantize to int8 (needs --calibration); the same as `quantize --int8`.")
    var int8 = false

    @OptionGroup var quantization: Int8Options

    @OptionGroup(title: "Half-precision weights (instead of --int8)")
    var half: HalfPrecisionOptions

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Backbone mode: drop the head and output these stages' feature maps (N x C x H x W), named stage0...stage3.",
            valueName: "0,1,2,3"))
    var features: String?

    @OptionGroup(title: "What a checkpoint's weights do not carry")
    var checkpoint: CheckpointFlags

    /// The stage list of `--features`, as `0,1,2,3` or `[0,1,2,3]`.
    var featureStages: [Int]? {
        get throws {
            guard let features else { return nil }
            let parts = features.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")).split(separator: ",")
            let stages = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, stages.count == parts.count else { throw ValidationError("--features takes stage numbers like 0,1,2,3") }
            return stages
        }
    }

    func validate() throws {
        try half.check(int8: int8, quantization)
        _ = try featureStages
    }

    func run() throws {
        try reportingErrors {
            let (input, output) = (files.input, files.output)
            let line = StageLine()
            defer { line.clear() }
            var options = try files.converterOptions(
                reads: quantization.reads + checkpoint.reads,
                classNamesFile: quantization.classNamesFile, line: line)
            options.features = try featureStages
            if int8 { options.int8 = try quantization.settings(threads: files.threads, model: input, recorded: options.recorded) }
            if let dtype = half.dtype { options.halfPrecision = (dtype, int8 ? [] : quantization.keepFloat) }
            options.verify = !noVerify
            options.verbose = verbose
            options.dumpAfter = dumpAfter
            options.checkpoint = try checkpoint.options
            options.referenceONNX = checkpoint.referenceOnnx
            let r = try Converter.convert(input: input, output: output, options: options)
            line.clear()
            if int8 { printInt8Report(r, output: output); return }
            if let dtype = half.dtype, !int8 { printHalfReport(r, output: output, dtype: dtype); return }
            if let a = r.architecture {
                print("model:     \(a.family) \(a.variant ?? "(custom)"), depths \(a.depths), dims \(a.dims)")
            } else {
                print("model:     not recognised as ConvNeXt; converted as a generic graph")
            }
            // What the checkpoint's weights do not say, as assumed, one line each with its source.
            for a in r.assumptions { print("assumed:   \(a.description)") }
            if let e = r.referenceError, let ref = checkpoint.referenceOnnx {
                print(String(format: "reference: relative error %.2e against %@ on a random input", e, ref))
            }
            print("outputs:   \(describeOutputs(r))")
            var applied = r.steps.filter { $0.rewrites > 0 && !(r.features != nil && $0.pass == "fuse-head") }.map {
                "\($0.pass) (\($0.rewrites))"
            }
            if r.features != nil { applied.append("extract-features") }
            print("passes:    \(applied.isEmpty ? "none changed the graph" : applied.joined(separator: ", "))")
            print("graph:     \(r.nodesBefore) nodes -> \(r.nodesAfter)")
            if let e = r.verificationError {
                print(String(format: "verified:  relative error %.2e against %@", e, r.verifiedAgainst ?? "the original"))
            } else {
                print("verified:  no (--no-verify)")
            }
            let recorded = options.recorded.keys.sorted()
            if !recorded.isEmpty { print("recorded:  \(recorded.joined(separator: ", "))") }
            print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
        }
    }
}
