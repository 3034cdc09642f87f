import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXPasses
import CNXRuntime
import CNXValidate
import Foundation

/// How images become inputs: over what the model records for `validate` and `run` (each
/// setting defaults to the model's, else ImageNet's: 224, 0.875, bicubic, ImageNet's mean and
/// std), recorded in the `.cnx` by `convert` and `quantize`. The option group's title says which.
struct PreprocessOptions: ParsableArguments {
    @Option(name: .long, help: "Image input size (square).")
    var size: Int?

    @Option(name: .customLong("crop-pct"), help: "Resize the shorter side to floor(size / crop-pct) before the centre crop.")
    var cropPct: Double?

    @Option(name: .long, help: "Resize filter, as PIL's: nearest, box, bilinear, hamming, bicubic or lanczos.")
    var interpolation: String?

    @Option(name: .long, help: "shorter-side: resize the shorter side, then centre-crop; square: resize to the input size, no crop.")
    var resize: String?

    @Option(name: .long, help: ArgumentHelp("Per-channel mean of pixels scaled to 0...1 (one value: all three).", valueName: "r,g,b"))
    var mean: String?

    @Option(name: .long, help: ArgumentHelp("Per-channel standard deviation (one value: all three).", valueName: "r,g,b"))
    var std: String?

    func validate() throws {
        if let size, size < 1 { throw ValidationError("--size must be positive") }
        if let cropPct, !(cropPct > 0 && cropPct <= 4) { throw ValidationError("--crop-pct must be in (0, 4]") }
        if let interpolation, Interpolation(rawValue: interpolation.lowercased()) == nil {
            throw ValidationError("--interpolation must be one of \(Interpolation.names), not '\(interpolation)'")
        }
        if let resize, Self.resizeMode(resize) == nil {
            throw ValidationError("--resize must be shorter-side or square, not '\(resize)'")
        }
        if let mean { _ = try Self.triple(mean, "--mean") }
        if let std {
            let v = try Self.triple(std, "--std")
            guard v.allSatisfy({ $0 != 0 }) else { throw ValidationError("--std values must be non-zero") }
        }
    }

    static func resizeMode(_ text: String) -> Preprocessing.ResizeMode? {
        switch text.lowercased().replacingOccurrences(of: "-", with: "_") {
        case "shorter_side": return .shorterSide
        case "square": return .square
        default: return nil
        }
    }

    static func triple(_ text: String, _ flag: String) throws -> [Float] {
        let fields = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = fields.compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }.filter(\.isFinite)
        guard values.count == fields.count, values.count == 3 || values.count == 1 else {
            throw ValidationError("\(flag) takes three numbers separated by commas (or one for all channels), not '\(text)'")
        }
        return values
    }

    /// The preprocessing to use: these flags, over the first model's (a timm `config.json` beside
    /// its file, else its `.cnx` metadata, which for a checkpoint folder holds what its config
    /// files say, and the input size its graph fixes), over the next's, over ImageNet's defaults.
    func resolve(_ models: [Predictor]) throws -> Preprocessing {
        var p = Preprocessing.imagenet
        for m in models.reversed() {
            p = p.updated(metadata: m.metadata)
            var isFolder: ObjCBool = false
            let config = URL(fileURLWithPath: m.path).deletingLastPathComponent().appendingPathComponent("config.json").path
            if FileManager.default.fileExists(atPath: m.path, isDirectory: &isFolder), !isFolder.boolValue,
                FileManager.default.fileExists(atPath: config)
            {
                p = try p.updated(timmConfig: config)
            }
            if let fixed = m.fixedSize { (p.height, p.width) = fixed }
        }
        if let size { (p.height, p.width) = (size, size) }
        if let cropPct { p.cropPct = cropPct }
        if let interpolation, let i = Interpolation(rawValue: interpolation.lowercased()) { p.interpolation = i }
        if let resize, let r = Self.resizeMode(resize) { p.resizeMode = r }
        if let mean { p.mean = try Self.triple(mean, "--mean") }
        if let std { p.std = try Self.triple(std, "--std") }
        if p.mean.count == 1 { p.mean = Array(repeating: p.mean[0], count: 3) }
        if p.std.count == 1 { p.std = Array(repeating: p.std[0], count: 3) }
        try p.validate()
        return p
    }
}

/// Loading models for `validate` and `run`.
enum Models {
    /// A `.cnx` runs on the fast runtime. Any other model file runs on the reference executor
    /// exactly as the file has it (no optimisation), so that a reference is its source's own
    /// arithmetic; with `fast`, it is optimised in memory as `convert` would and runs on the fast
    /// runtime instead.
    static func load(_ path: String, threads: Int?, fast: Bool = false) throws -> (Predictor, LoadedModel) {
        let loaded = try ModelLoader.load(path)
        guard loaded.graph.inputs.count == 1, !loaded.graph.outputs.isEmpty else {
            throw CNXError(
                "\(path): expected one graph input and an output, found \(loaded.graph.inputs.count) inputs and \(loaded.graph.outputs.count) outputs"
            )
        }
        if loaded.format == "cnx" || fast {
            let graph = try optimised(loaded, path: path)
            let model: Model
            do { model = try Model(graph: graph, metadata: loaded.metadata, threads: threads) } catch let e as CNXError {
                throw e.inFile(path)
            }
            var p = Predictor.fast(model, path: path)
            if loaded.format != "cnx" { p.runtime += ", optimised in memory" }
            return (p, loaded)
        }
        return (.reference(graph: loaded.graph, path: path, metadata: loaded.metadata), loaded)
    }

    /// The graph optimised as `convert` optimises it (a `.cnx` already is).
    static func optimised(_ loaded: LoadedModel, path: String) throws -> Graph {
        var g = loaded.graph
        if loaded.format != "cnx" {
            do { _ = try Pipeline.standard.run(&g) } catch let e as CNXError { throw e.inFile(path) }
        }
        return g
    }
}

/// `validate MODEL ...` (the default) and `validate merge PART...`.
struct ValidateGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Compare a model with a reference on data; merge the parts of a validation run in shards.",
        subcommands: [Validate.self, ValidateMerge.self],
        defaultSubcommand: Validate.self)
}

struct ValidateMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge the parts of a validation run in shards (validate --shard K/N --part FILE) into its report.",
        discussion: """
            The figures are exactly those of the same validation run unsharded (the sums behind them are kept exactly); \
            timings are the parts' added up. Parts of different models, references, data, labels, preprocessing or shard \
            counts are refused, and missing or repeated shards are named.

            Exit status: 0; 1 on an error; 2 when --max-drop is exceeded.
            """)

    @Argument(help: "The parts, one per shard, in any order.")
    var parts: [String]

    @OptionGroup var verdict: VerdictOptions

    @Option(
        name: .long,
        help:
            "Also write the merged validation as a self-contained HTML report (the models are read again from the parts' paths; no gallery or confusion matrix, which the parts do not carry)."
    )
    var report: String?

    func validate() throws {
        guard !parts.isEmpty else { throw ValidationError("give the parts to merge") }
    }

    func run() throws {
        var within = true
        try reportingErrors {
            if let report {
                try checkReportPath(report)
                try OutputGuard.check(output: report, kind: .html, reads: parts.map { ReadFile($0, role: "a part") }, force: false)
            }
            let read = try parts.map { (path: $0, part: try ValidationPart.read(path: $0)) }
            let result = try ValidationPart.merge(read)
            if verdict.maxDrop != nil && result.isMultiOutput {
                throw CNXError(
                    "--max-drop gates classification models (one output); these parts compare \(result.outputs?.count ?? 0) outputs")
            }
            print(verdict.rendered(result))
            if let report {
                guard result.referenceRuntime != "saved logits" else {
                    throw CNXError("--report describes the reference model, and these parts were validated against saved logits")
                }
                let model = try Models.load(result.modelPath, threads: 1), reference = try Models.load(result.referencePath, threads: 1)
                func facts(_ p: Predictor, _ l: LoadedModel, runtime: String) -> ModelFacts {
                    .of(
                        path: p.path, file: ModelLoader.sourceFile(p.path), format: l.format, graph: l.graph, metadata: l.metadata,
                        runtime: runtime)
                }
                let classes = result.metrics.classes
                let names =
                    result.classNames ?? (try? Classification.classNames(classes: classes, metadata: model.0.metadata, labelsFile: nil))
                    ?? (0..<classes).map(String.init)
                var context = HTMLReport.Context(
                    model: facts(model.0, model.1, runtime: result.modelRuntime),
                    reference: facts(reference.0, reference.1, runtime: result.referenceRuntime), classNames: names)
                (context.batch, context.maxDrop, context.command) = (read[0].part.batch, verdict.maxDrop, commandLine())
                try HTMLReport.write(HTMLReport.validation(result, collector: nil, context: context), to: report)
            }
            within = verdict.within(result, command: "validate merge")
        }
        if !within { throw ExitCode(2) }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Compare a model with a reference on data: accuracy, agreement, logits error, throughput.",
        discussion: """
            DATA is a float32 .npy batch (N x 3 x H x W, preprocessed), an image, a folder of images, or a folder of class sub-folders (labels as torchvision's ImageFolder gives them). Images are resized, centre-cropped and normalised as the model says (a timm config.json beside it, or its .cnx metadata, which for a transformers folder reproduces its ConvNextImageProcessor: at 384 and above a square resize with no crop), overridden by --size, --crop-pct, --interpolation, --resize, --mean and --std, else as ImageNet's models expect; the report (and the JSON's `preprocessing`) says where each setting came from, and a warning on stderr names those that are ImageNet's defaults.

            A .cnx runs on the fast runtime, other files on the reference executor as they are (--fast: optimised in memory, on the fast runtime).

            Models with several outputs (a backbone's stage0..stage3, say) are compared output by output, matched by name (MODEL and REF must have the same output names): mean cosine similarity, SQNR and largest difference of each, one table row or one entry of the JSON `outputs` object per output, the top-level mean_cosine and sqnr_db being the worst over them. Accuracy, agreement and --max-drop are for classification (single-output) models and are not available there.

            Exit status: 0; 1 on an error; 2 when --max-drop is exceeded.
            """)

    @Argument(help: "The model to check (.cnx, .onnx, .safetensors, .pth, or a timm hub or transformers folder).")
    var model: String

    @Option(name: .long, help: "The model to compare with (any model file the tool reads), normally the source of MODEL.")
    var reference: String?

    @Option(
        name: .customLong("reference-logits"),
        help:
            "The reference's logits saved by an earlier --save-logits (.npy, samples x classes), instead of --reference. '{shard}' in the name stands for the shard number."
    )
    var referenceLogits: String?

    @Option(
        name: .customLong("save-logits"),
        help:
            "Write the reference's logits of the samples validated to this .npy, for --reference-logits later. '{shard}' in the name stands for the shard number."
    )
    var saveLogits: String?

    @OptionGroup(title: "Sharding (a dataset validated in parts)")
    var sharding: ShardOptions

    @OptionGroup(title: "How the models run")
    var running: RunSettings

    @Option(name: .long, help: "The samples: a .npy batch, an image, or a folder of images or of class folders.")
    var data: String

    @Option(name: .long, help: "Class ids (.npy of integers, one per sample in the order of DATA); replaces labels from class folders.")
    var labels: String?

    @OptionGroup var verdict: VerdictOptions

    @Flag(
        name: .customLong("per-layer"),
        help: "Add the SQNR of every stem, block, downsample and head output against the reference's (on the first 8 samples).")
    var perLayer = false

    @Option(
        name: .long,
        help:
            "Also write a self-contained HTML report to this file: summary, per-layer error (with --per-layer), per-class accuracy and confusions, disagreeing images, speed and size."
    )
    var report: String?

    @OptionGroup(title: "Preprocessing of images (default: what the models record, else ImageNet's)")
    var preprocess: PreprocessOptions

    func validate() throws {
        guard (reference == nil) != (referenceLogits == nil) else {
            throw ValidationError("give the reference as --reference MODEL or as --reference-logits FILE (one of the two)")
        }
        if sharding.shard != nil && (verdict.perClass || verdict.json || verdict.maxDrop != nil || report != nil) {
            throw ValidationError(
                "--per-class, --json, --max-drop and --report belong to the whole run, not to one shard: give them to 'validate merge'")
        }
        if saveLogits != nil && referenceLogits != nil {
            throw ValidationError("--save-logits saves a reference model's logits; --reference-logits already are")
        }
    }

    func run() throws {
        var within = true
        try reportingErrors {
            let shard = try sharding.parsed
            func named(_ template: String) -> String {
                template.replacingOccurrences(of: "{shard}", with: shard.map { String($0.index) } ?? "all")
            }
            // Nothing this command writes may replace a file it reads.
            var reads = [ReadFile(model, role: "the model"), ReadFile(data, role: "the data")]
            if let r = self.reference { reads.append(ReadFile(r, role: "the reference")) }
            if let l = referenceLogits { reads.append(ReadFile(named(l), role: "the reference logits")) }
            if let l = labels { reads.append(ReadFile(l, role: "the labels")) }
            if let report {
                try checkReportPath(report)
                try OutputGuard.check(output: report, kind: .html, reads: reads, force: false)
            }
            if let part = sharding.part { try OutputGuard.check(output: named(part), kind: .json, reads: reads, force: false) }
            if let l = saveLogits { try OutputGuard.check(output: named(l), kind: .npy, reads: reads, force: false) }
            let (m, mLoaded) = try Models.load(model, threads: running.threads, fast: running.fast)
            var reference: (Predictor, LoadedModel)?
            if let path = self.reference { reference = try Models.load(path, threads: running.threads, fast: running.fast) }
            let referenceName = self.reference ?? named(referenceLogits ?? "")
            if let r = reference?.0, let names = try Validation.pairedOutputs(model: m, reference: r), verdict.maxDrop != nil {
                throw CNXError(
                    "--max-drop gates classification models (one output); \(model) has \(names.count) outputs "
                        + "(\(names.joined(separator: ", "))): validate it without --max-drop and check each output's SQNR")
            }
            let dataset: Dataset
            var resolved: ResolvedPreprocessing?
            if data.lowercased().hasSuffix(".npy") {
                if preprocess.given {
                    throw ValidationError(
                        "--size, --crop-pct, --interpolation, --mean and --std apply to images; \(data) is already preprocessed")
                }
                dataset = try Dataset.npy(data)
            } else {
                let p = try preprocess.resolveWithSources([m] + (reference.map { [$0.0] } ?? []))
                dataset = try Dataset.images(data, preprocessing: p.preprocessing)
                resolved = p
            }
            dataset.threads = running.threads ?? ProcessInfo.processInfo.activeProcessorCount
            if let labels { try dataset.loadLabels(labels) }
            let range = shard?.range(of: dataset.count, batch: running.batch) ?? 0..<dataset.count
            if let shard {
                note("validate: shard \(shard.description): samples \(range.lowerBound)..<\(range.upperBound) of \(dataset.count)")
            }
            var result: ValidationResult
            let collector = report == nil ? nil : ReportCollector()
            if let r = reference?.0 {
                var saved: Tensor?
                var keep: ((Range<Int>, Tensor) throws -> Void)?
                if saveLogits != nil {
                    keep = { rows, logits in
                        if saved == nil { saved = Tensor(zeros: .float32, shape: [range.count, logits.shape[1]]) }
                        guard let all = saved, logits.shape.count == 2, logits.shape[1] == all.shape[1] else { return }
                        all.copyFloats(from: logits, count: logits.count, at: (rows.lowerBound - range.lowerBound) * all.shape[1])
                    }
                }
                result = try Validation.run(
                    model: m, reference: r, data: dataset, batch: running.batch, range: range, decodeAhead: running.decodeAhead,
                    collect: collector, saveReference: keep)
                if let path = saveLogits {
                    guard let saved else {
                        throw CNXError(
                            "--save-logits: \(reference?.1.graph.outputs.count ?? 0) outputs; only a classification reference's logits are saved"
                        )
                    }
                    try NPY.write(saved, path: named(path))
                    note("validate: the reference's logits of \(range.count) samples written to \(named(path))")
                }
            } else {
                let path = referenceName
                let logits = try NPY.read(path: path)
                result = try Validation.run(
                    model: m, referenceLogits: logits, path: path, data: dataset, batch: running.batch, range: range,
                    decodeAhead: running.decodeAhead, collect: collector)
            }
            result.preprocessingSources = resolved.map { Dictionary(uniqueKeysWithValues: $0.sources.map { ($0.setting, $0.source) }) }
            // Said once the data has been read, so that a bad input stays one line on its own.
            if let w = resolved?.warning(models: [model, referenceName]) { note(w) }
            if perLayer && (shard?.index ?? 0) != 0 {
                note("validate: --per-layer is computed by shard 0 only (on the data's first samples)")
            } else if perLayer {
                guard let rLoaded = reference?.1 else {
                    throw CNXError("--per-layer needs a reference model (--reference), not saved logits")
                }
                let n = min(m.fixedBatch ?? reference?.0.fixedBatch ?? 8, dataset.count)
                let x = try dataset.batch(0..<n)
                let mg = try Models.optimised(mLoaded, path: model), rg = try Models.optimised(rLoaded, path: referenceName)
                do {
                    result.perLayer = try PerLayer.compare(model: mg, reference: rg, input: x)
                } catch let e as CNXError {
                    throw CNXError("--per-layer: \(model) against \(referenceName): \(e.message)")
                }
            }
            if let shard, let part = sharding.part {
                let identity = try ValidationPart.identity(
                    modelFile: ModelLoader.sourceFile(model), referenceFile: self.reference.map { ModelLoader.sourceFile($0) },
                    referenceLogits: referenceLogits, data: dataset)
                let text = ValidationPart(
                    shard: shard, range: range, total: dataset.count, batch: running.batch, identity: identity, result: result
                ).json()
                try AtomicFile.write(Data(text.utf8), to: named(part))
                note(
                    "validate: part \(shard.description) (\(range.count) samples, "
                        + String(format: "%.1f images/s", result.modelThroughput) + ") written to \(named(part))")
                return
            }
            print(verdict.rendered(result))
            if let report {
                guard let reference else {
                    throw CNXError("--report describes a reference model: give --reference MODEL, not --reference-logits")
                }
                try writeReport(report, result: result, collector: collector, data: dataset, model: (m, mLoaded), reference: reference)
            }
            within = verdict.within(result, command: "validate")
        }
        if !within { throw ExitCode(2) }
    }
}

extension Validate {
    /// The HTML report of `--report`, written whole or not at all.
    func writeReport(
        _ path: String, result: ValidationResult, collector: ReportCollector?, data: Dataset,
        model: (Predictor, LoadedModel), reference: (Predictor, LoadedModel)
    ) throws {
        func facts(_ p: Predictor, _ l: LoadedModel) -> ModelFacts {
            .of(
                path: p.path, file: ModelLoader.sourceFile(p.path), format: l.format, graph: l.graph, metadata: l.metadata,
                runtime: p.runtime)
        }
        let classes = result.metrics.classes
        let names =
            result.classNames ?? (try? Classification.classNames(classes: classes, metadata: model.0.metadata, labelsFile: nil))
            ?? (0..<classes).map(String.init)
        var context = HTMLReport.Context(model: facts(model.0, model.1), reference: facts(reference.0, reference.1), classNames: names)
        (context.data, context.batch, context.maxDrop, context.command) = (data, running.batch, verdict.maxDrop, commandLine())
        try HTMLReport.write(HTMLReport.validation(result, collector: collector, context: context), to: path)
    }
}

/// Refuses a report path whose folder does not exist, before any work is done.
func checkReportPath(_ path: String) throws {
    let folder = (path as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    guard folder.isEmpty || (FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && isDirectory.boolValue) else {
        throw CNXError("\(path): cannot write the report: there is no folder \(folder)")
    }
}

/// This process's command line, as a shell would take it, for reports.
func commandLine() -> String {
    (["convnext-convert"] + CommandLine.arguments.dropFirst()).map(shellQuoted).joined(separator: " ")
}

/// An argument as a shell would need it quoted, for the command line shown in reports.
func shellQuoted(_ s: String) -> String {
    let plain = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=,:+@%")
    if !s.isEmpty, s.unicodeScalars.allSatisfy(plain.contains) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Which part of the data one `validate` run takes, for a dataset validated by several.
struct ShardOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "Validate shard K of N only (K counted from 0: a deterministic slice of the data), and write its part with --part; 'auto' takes K and N from Slurm's SLURM_ARRAY_TASK_* or Kubernetes' JOB_COMPLETION_INDEX (with --shards)."
    )
    var shard: String?

    @Option(name: .long, help: "The number of shards, for --shard auto under Kubernetes (the Job's completions).")
    var shards: Int?

    @Option(
        name: .long,
        help:
            "With --shard: write the shard's part (JSON sums, for 'validate merge') to this file. '{shard}' in the name stands for the shard number."
    )
    var part: String?

    func validate() throws {
        if shard != nil && part == nil { throw ValidationError("--shard needs --part FILE, where the shard's part goes") }
        if part != nil && shard == nil { throw ValidationError("--part goes with --shard K/N") }
        if let shards, shards < 1 { throw ValidationError("--shards must be at least 1") }
    }

    /// The shard asked for, nil for the whole data.
    var parsed: Shard? {
        get throws { try shard.map { try Shard.parse($0, shards: shards) } }
    }
}

/// How `validate` runs the two models: runtime, batch, threads and decoding ahead.
struct RunSettings: ParsableArguments {
    @Flag(
        name: .long,
        help:
            "Run MODEL or REF files that are not .cnx optimised in memory on the fast runtime, not as they are on the (much slower) reference executor."
    )
    var fast = false

    @Option(name: .long, help: "Samples per prediction.")
    var batch = 32

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(
        name: .customLong("decode-ahead"),
        help: "Image batches decoded ahead on other threads while the models run (0: decode between predictions).")
    var decodeAhead = 2

    func validate() throws {
        guard decodeAhead >= 0 else { throw ValidationError("--decode-ahead must be 0 or more") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }
}

/// How a validation's figures are given (table or JSON, per class) and the `--max-drop` gate:
/// the same for a whole run and for the merge of its shards.
struct VerdictOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    @Option(
        name: .customLong("max-drop"),
        help:
            "Exit with status 2 when the model's top-1 accuracy is more than this many percentage points below the reference's (without labels: when top-1 agreement is below 100 minus this, in percent). Classification (single-output) models only."
    )
    var maxDrop: Double?

    @Flag(name: .customLong("per-class"), help: "Add the per-class accuracy change.")
    var perClass = false

    func validate() throws {
        if let maxDrop, !(maxDrop >= 0 && maxDrop <= 100) { throw ValidationError("--max-drop must be between 0 and 100") }
    }

    /// The result as the flags ask: the table or the JSON object.
    func rendered(_ result: ValidationResult) -> String {
        json ? result.json(perClass: perClass, maxDrop: maxDrop) : result.table(perClass: perClass, maxDrop: maxDrop)
    }

    /// Whether the result is within `--max-drop` (always without it); when not, says why on
    /// stderr, as `command`.
    func within(_ result: ValidationResult, command: String) -> Bool {
        guard let maxDrop else { return true }
        let within = result.withinBudget(maxDrop: maxDrop)
        if !within { note("\(command): \(result.budgetVerdict(maxDrop: maxDrop))") }
        return within
    }
}
