import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXImport
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

    @Argument(help: "The model to convert: .onnx, .safetensors, .pth/.pt/.bin, a sharded .index.json, a timm or transformers folder, or a .cnx.")
    var input: String

    @Argument(help: "The .cnx file to write.")
    var output: String

    @Flag(name: .long, help: "Skip the check of the optimised graph against the original.")
    var noVerify = false

    @Flag(name: .shortAndLong, help: "Print what each pass did.")
    var verbose = false

    @Option(name: .long, help: ArgumentHelp("Print the graph after the named pass (fold-constants, fold-layernorm, fold-gelu, fold-grn, fold-linear, eliminate-transposes, fold-layernorm-affine, fold-layer-scale, fuse-stem, fuse-downsample, fuse-blocks, fuse-head).", valueName: "PASS"))
    var dumpAfter: String?

    @Flag(name: .long, help: "Also quantize to int8 (needs --calibration); the same as `quantize --int8`.")
    var int8 = false

    @OptionGroup var quantization: Int8Options

    @OptionGroup(title: "Half-precision weights (instead of --int8)")
    var half: HalfPrecisionOptions

    @Option(name: .long, help: "Threads for verification and calibration (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: ArgumentHelp("Backbone mode: drop the head and output these stages' feature maps (N x C x H x W), named stage0...stage3.", valueName: "0,1,2,3"))
    var features: String?

    @OptionGroup(title: "Preprocessing to record in the .cnx (run, validate and calibration use it)")
    var record: PreprocessOptions

    @Flag(name: .long, help: "Write over an existing file that is not a .cnx, or to a name not ending in .cnx (never over a file the command reads).")
    var force = false

    @Option(name: .long, help: ArgumentHelp("For a checkpoint: the norms' epsilon, for every norm or per site (stem, downsample, block, head, features), e.g. 1e-5 or head=1e-12,block=1e-6.", valueName: "eps"))
    var layerNormEps: String?

    @Option(name: .long, help: ArgumentHelp("For a checkpoint: the blocks' activation (gelu, gelu_tanh, silu).", valueName: "name"))
    var activation: String?

    @Option(name: .long, help: ArgumentHelp("For a checkpoint: the norms' kind (layernorm, rmsnorm, simplenorm).", valueName: "kind"))
    var norm: String?

    @Option(name: .long, help: ArgumentHelp("An ONNX export of the same model: the checkpoint's graph is checked against it on a random input (refused beyond 1e-4 relative).", valueName: "file"))
    var referenceOnnx: String?

    /// What the flags say about the values a checkpoint's weights do not carry.
    var checkpointOptions: CheckpointOptions {
        get throws {
            var o = CheckpointOptions()
            if let e = layerNormEps {
                do { o.layerNormEps = try CheckpointOptions.parseEps(e) } catch let e as CNXError { throw ValidationError(e.message) }
            }
            if let a = activation {
                guard let v = Activation(rawValue: a) else {
                    throw ValidationError("--activation takes \(Activation.allCases.map(\.rawValue).joined(separator: ", ")); not '\(a)'")
                }
                o.activation = v
            }
            if let n = norm {
                guard let v = NormKind(rawValue: n) else {
                    throw ValidationError("--norm takes \(NormKind.allCases.map(\.rawValue).joined(separator: ", ")); not '\(n)'")
                }
                o.norm = v
            }
            return o
        }
    }

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
        _ = try checkpointOptions
    }

    func run() throws {
        try reportingErrors {
            let reference = referenceOnnx.map { [ReadFile($0, role: "the reference ONNX export")] } ?? []
            try OutputGuard.check(output: output, kind: .cnx, reads: [ReadFile(input, role: "the input model")] + quantization.reads + reference,
                                  force: force)
            var options = Converter.Options()
            options.features = try featureStages
            options.reads = quantization.reads + reference
            options.force = force
            options.recorded = try record.metadata(classNamesFile: quantization.classNamesFile)
            if int8 { options.int8 = try quantization.settings(threads: threads, model: input, recorded: options.recorded) }
            if let dtype = half.dtype { options.halfPrecision = (dtype, int8 ? [] : quantization.keepFloat) }
            options.verify = !noVerify
            options.verbose = verbose
            options.dumpAfter = dumpAfter
            let line = StageLine()
            options.stage = line.callback
            defer { line.clear() }
            options.checkpoint = try checkpointOptions
            options.referenceONNX = referenceOnnx
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
            if let e = r.referenceError, let ref = referenceOnnx {
                print(String(format: "reference: relative error %.2e against %@ on a random input", e, ref))
            }
            print("outputs:   \(describeOutputs(r))")
            var applied = r.steps.filter { $0.rewrites > 0 && !(r.features != nil && $0.pass == "fuse-head") }.map { "\($0.pass) (\($0.rewrites))" }
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
