import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXImport
import Foundation

/// What every command that writes a `.cnx` takes (`convert`, `quantize`): the model read, the
/// file written, threads, `--force` and the preprocessing recorded in the file. Flags of one
/// command only (`--features`, `--bf16`, ...) sit beside this group in that command.
struct ConversionOptions: ParsableArguments {
    @Argument(
        help: "The model to read: .onnx, .safetensors, .pth/.pt/.bin, a sharded .index.json, a timm or transformers folder, or a .cnx.")
    var input: String

    @Argument(help: "The .cnx file to write.")
    var output: String

    @Option(name: .long, help: "Threads for verification, calibration and quantization (default: all cores).")
    var threads: Int?

    @Flag(
        name: .long,
        help: "Write over an existing file that is not a .cnx, or to a name not ending in .cnx (never over a file the command reads).")
    var force = false

    @OptionGroup(title: "Preprocessing to record in the .cnx (run, validate and calibration from images use it)")
    var record: PreprocessOptions

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Checks the output against the input and `reads` (refused before any work), and starts
    /// the converter's options: what is recorded, read and replaced, and the stage line.
    func converterOptions(reads: [ReadFile], classNamesFile: String?, line: StageLine) throws -> Converter.Options {
        try OutputGuard.check(output: output, kind: .cnx, reads: [ReadFile(input, role: "the input model")] + reads, force: force)
        var options = Converter.Options()
        options.recorded = try record.metadata(classNamesFile: classNamesFile)
        options.reads = reads
        options.force = force
        options.stage = line.callback
        return options
    }
}

/// What a checkpoint's weights do not carry (the norms' kind and epsilon, the activation), as
/// the command line says it, and an ONNX export to check the result against.
struct CheckpointFlags: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "For a checkpoint: the norms' epsilon, for every norm or per site (stem, downsample, block, head, features), e.g. 1e-5 or head=1e-12,block=1e-6.",
            valueName: "eps"))
    var layerNormEps: String?

    @Option(name: .long, help: ArgumentHelp("For a checkpoint: the blocks' activation (gelu, gelu_tanh, silu).", valueName: "name"))
    var activation: String?

    @Option(name: .long, help: ArgumentHelp("For a checkpoint: the norms' kind (layernorm, rmsnorm, simplenorm).", valueName: "kind"))
    var norm: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "An ONNX export of the same model: the checkpoint's graph is checked against it on a random input (refused beyond \(Converter.tolerance) relative).",
            valueName: "file"))
    var referenceOnnx: String?

    func validate() throws {
        _ = try options
    }

    /// The reference export, as a file the command reads.
    var reads: [ReadFile] {
        referenceOnnx.map { [ReadFile($0, role: "the reference ONNX export")] } ?? []
    }

    /// What the flags say about the values a checkpoint's weights do not carry.
    var options: CheckpointOptions {
        get throws {
            var o = CheckpointOptions()
            if let e = layerNormEps {
                do { o.layerNormEps = try CheckpointOptions.parseEps(e) } catch let e as CNXError { throw ValidationError(e.message) }
            }
            o.activation = try Self.choice(activation, "--activation", Activation.self)
            o.norm = try Self.choice(norm, "--norm", NormKind.self)
            return o
        }
    }

    /// The case of `T` a flag names; nil without the flag.
    static func choice<T: CaseIterable & RawRepresentable>(_ text: String?, _ flag: String, _: T.Type) throws -> T?
    where T.RawValue == String {
        guard let text else { return nil }
        guard let v = T(rawValue: text) else {
            throw ValidationError("\(flag) takes \(T.allCases.map(\.rawValue).joined(separator: ", ")); not '\(text)'")
        }
        return v
    }
}
