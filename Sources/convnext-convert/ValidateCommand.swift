import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXPasses
import CNXRuntime
import CNXValidate
import Foundation

/// How images become inputs, overriding what the model says (shared by `validate` and `run`).
struct PreprocessOptions: ParsableArguments {
    @Option(name: .long, help: "Image input size, square (default: the model's, else 224).")
    var size: Int?

    @Option(name: .customLong("crop-pct"), help: "Resize the shorter side to floor(size / crop-pct) before the centre crop (default: the model's, else 0.875).")
    var cropPct: Double?

    @Option(name: .long, help: "Resize filter, as PIL's: nearest, box, bilinear, hamming, bicubic or lanczos (default: the model's, else bicubic).")
    var interpolation: String?

    @Option(name: .long, help: "shorter-side: resize the shorter side, then centre-crop; square: resize to the input size, no crop (default: the model's, else shorter-side).")
    var resize: String?

    @Option(name: .long, help: "Per-channel mean, as a,b,c (default: the model's, else ImageNet's).")
    var mean: String?

    @Option(name: .long, help: "Per-channel standard deviation, as a,b,c (default: the model's, else ImageNet's).")
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
               FileManager.default.fileExists(atPath: config) {
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
            throw CNXError("\(path): expected one graph input and an output, found \(loaded.graph.inputs.count) inputs and \(loaded.graph.outputs.count) outputs")
        }
        if loaded.format == "cnx" || fast {
            let graph = try optimised(loaded, path: path)
            let model: Model
            do { model = try Model(graph: graph, metadata: loaded.metadata, threads: threads) } catch let e as CNXError { throw e.inFile(path) }
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

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a model with a reference on data: accuracy, agreement, logits error, throughput.",
        discussion: """
        DATA is a float32 .npy batch (N x 3 x H x W, preprocessed), an image, a folder of images, or a folder of class sub-folders (labels as torchvision's ImageFolder gives them). Images are resized, centre-cropped and normalised as the model says (a timm config.json beside it, or its .cnx metadata, which for a transformers folder reproduces its ConvNextImageProcessor: at 384 and above a square resize with no crop), overridden by --size, --crop-pct, --interpolation, --resize, --mean and --std.

        A .cnx runs on the fast runtime, other files on the reference executor as they are (--fast: optimised in memory, on the fast runtime).

        Models with several outputs (a backbone's stage0..stage3, say) are compared output by output, matched by name (MODEL and REF must have the same output names): mean cosine similarity, SQNR and largest difference of each, one table row or one entry of the JSON `outputs` object per output, the top-level mean_cosine and sqnr_db being the worst over them. Accuracy, agreement and --max-drop are for classification (single-output) models and are not available there.

        Exit status: 0; 1 on an error; 2 when --max-drop is exceeded.
        """)

    @Argument(help: "The model to check (.cnx or .onnx).")
    var model: String

    @Option(name: .long, help: "The model to compare with (.onnx or .cnx), normally the source of MODEL.")
    var reference: String

    @Option(name: .long, help: "The samples: a .npy batch, an image, or a folder of images or of class folders.")
    var data: String

    @Option(name: .long, help: "Class ids (.npy of integers, one per sample in the order of DATA); replaces labels from class folders.")
    var labels: String?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    @Option(name: .customLong("max-drop"), help: "Exit with status 2 when MODEL's top-1 accuracy is more than this many percentage points below REF's (without labels: when top-1 agreement is below 100 minus this, in percent). Classification (single-output) models only.")
    var maxDrop: Double?

    @Flag(name: .customLong("per-class"), help: "Add the per-class accuracy change.")
    var perClass = false

    @Flag(name: .customLong("per-layer"), help: "Add the SQNR of every stem, block, downsample and head output against the reference's (on the first 8 samples).")
    var perLayer = false

    @OptionGroup var preprocess: PreprocessOptions

    @Flag(name: .long, help: "Run MODEL or REF files that are not .cnx optimised in memory on the fast runtime, not as they are on the (much slower) reference executor.")
    var fast = false

    @Option(name: .long, help: "Samples per prediction.")
    var batch = 32

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let maxDrop, !(maxDrop >= 0 && maxDrop <= 100) { throw ValidationError("--max-drop must be between 0 and 100") }
    }

    func run() throws {
        var within = true
        try reportingErrors {
            let (m, mLoaded) = try Models.load(model, threads: threads, fast: fast)
            let (r, rLoaded) = try Models.load(reference, threads: threads, fast: fast)
            if let names = try Validation.pairedOutputs(model: m, reference: r), maxDrop != nil {
                throw CNXError("--max-drop gates classification models (one output); \(model) has \(names.count) outputs "
                               + "(\(names.joined(separator: ", "))): validate it without --max-drop and check each output's SQNR")
            }
            let dataset: Dataset
            if data.lowercased().hasSuffix(".npy") {
                dataset = try Dataset.npy(data)
            } else {
                dataset = try Dataset.images(data, preprocessing: try preprocess.resolve([m, r]))
            }
            dataset.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
            if let labels { try dataset.loadLabels(labels) }
            var result = try Validation.run(model: m, reference: r, data: dataset, batch: batch)
            if perLayer {
                let n = min(m.fixedBatch ?? r.fixedBatch ?? 8, dataset.count)
                let x = try dataset.batch(0..<n)
                let mg = try Models.optimised(mLoaded, path: model), rg = try Models.optimised(rLoaded, path: reference)
                do {
                    result.perLayer = try PerLayer.compare(model: mg, reference: rg, input: x)
                } catch let e as CNXError {
                    throw CNXError("--per-layer: \(model) against \(reference): \(e.message)")
                }
            }
            print(json ? result.json(perClass: perClass, maxDrop: maxDrop) : result.table(perClass: perClass, maxDrop: maxDrop))
            if let maxDrop {
                within = result.withinBudget(maxDrop: maxDrop)
                if !within { note("validate: \(result.budgetVerdict(maxDrop: maxDrop))") }
            }
        }
        if !within { throw ExitCode(2) }
    }
}
