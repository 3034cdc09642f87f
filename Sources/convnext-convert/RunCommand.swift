import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXRuntime
import CNXValidate
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images, or run a model on images or a .npy batch and save its outputs as .npy/.npz.",
        discussion: """
              convnext-convert run model.cnx photo.jpg other.png --top 5
              convnext-convert run model.cnx photos/ 'more/*.jpg' --output y.npy --json
              convnext-convert run backbone.cnx photo.jpg --output features.npz
              convnext-convert run model.cnx --input x.npy --output logits.npy

            IMAGES are JPEG or PNG files, folders of them, or quoted glob patterns. They are \
            resized, centre-cropped and normalised as the model records (.cnx metadata, a timm \
            config.json), else as the flags say, else as ImageNet's models expect; the preprocessing \
            used and where each setting came from are printed on stderr, with a warning for \
            defaults. An image that cannot be read is reported and skipped; the others still run, \
            and the exit status is 1 at the end.

            --output writes every output: a .npy for a model with one output (logits), an .npz \
            with one array per output (a backbone's stage feature maps), one row per image or \
            sample. A batch larger than a fixed-batch export's batch is run in pieces.

            Class names: --labels FILE (one a line), else the .cnx's general.class_names, else \
            ImageNet-1K's for a 1000-class model, else the class numbers. A .cnx runs on the fast \
            runtime; other files on the reference executor for --input, optimised in memory for \
            images.
            """)

    @Argument(help: "The model file (.cnx, .onnx, .safetensors, .pth, or a timm hub or transformers folder).")
    var model: String

    @Argument(help: "Images: JPEG or PNG files, folders of them, or quoted glob patterns.")
    var images: [String] = []

    @Option(name: .long, help: "A preprocessed batch: float32 .npy of shape N x 3 x H x W (instead of images).")
    var input: String?

    @Option(name: .long, help: "Save the outputs: a float32 .npy (one output), or an .npz of every output by name.")
    var output: String?

    @Option(name: .long, help: "How many classes to print for each image.")
    var top = 5

    @Option(name: .long, help: "Class names, one a line, in class-id order.")
    var labels: String?

    @Flag(name: .long, help: "Print one JSON object (preprocessing, each image's top classes or error) instead of text.")
    var json = false

    @Flag(name: .long, help: "Write --output over an existing file that is not a .npy/.npz (never over a file the command reads).")
    var force = false

    @OptionGroup(title: "Preprocessing of images (default: what the model records, else ImageNet's)")
    var preprocess: PreprocessOptions

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if images.isEmpty {
            guard input != nil, output != nil else {
                throw ValidationError("give images to run, or --input X.npy and --output Y.npy")
            }
        } else if input != nil {
            throw ValidationError("give images or --input X.npy, not both")
        }
        if input != nil && preprocess.given {
            throw ValidationError("--size, --crop-pct, --interpolation, --mean and --std apply to images; --input is already preprocessed")
        }
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The output's kind, by its extension: .npz, else .npy (whose name `OutputGuard` checks);
    /// with `--force`, any other name is a .npy for one output and an .npz for several.
    func outputKind(_ path: String, outputs: Int) -> OutputKind {
        let lower = path.lowercased()
        if lower.hasSuffix(".npz") { return .npz }
        if lower.hasSuffix(".npy") || !force { return .npy }
        return outputs > 1 ? .npz : .npy
    }

    func run() throws {
        var failed = false
        try reportingErrors {
            if let input, let output {
                try runBatch(input: input, output: output)
            } else {
                failed = try runImages()
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// Writes `arrays` (one per output, rows in sample order) as the output's kind says.
    func write(_ arrays: [(name: String, tensor: Tensor)], to output: String, kind: OutputKind) throws {
        if kind == .npz {
            try NPZ.write(arrays, path: output)
        } else {
            guard arrays.count == 1 else {
                throw CNXError(
                    "\(model) has \(arrays.count) outputs (\(arrays.map(\.name).joined(separator: ", "))): write them with --output FILE.npz"
                )
            }
            try NPY.write(arrays[0].tensor, path: output)
        }
    }

    func runBatch(input: String, output: String) throws {
        let (m, loaded) = try Models.load(model, threads: threads)
        let kind = outputKind(output, outputs: m.outputNames.count)
        try OutputGuard.check(
            output: output, kind: kind,
            reads: OutputGuard.modelFiles(model, graphMetadata: loaded.graph.metadata) + [ReadFile(input, role: "the --input batch")],
            force: force)
        if kind == .npy && m.outputNames.count > 1 {
            throw CNXError(
                "\(model) has \(m.outputNames.count) outputs (\(m.outputNames.joined(separator: ", "))): write them with --output FILE.npz")
        }
        let x = try NPY.read(path: input)
        guard x.dtype == .float32 else { throw CNXError("\(input): the input must be float32, got \(x.dtype.name)") }
        guard x.shape.count == 4, x.shape[0] > 0 else { throw CNXError("\(input): the input must be N x 3 x H x W, got \(x.shape)") }
        let start = Date()
        let ys: [Tensor]
        do { ys = try m.predictAll(x) } catch let e as CNXError { throw CNXError("\(model) on \(input): \(e.message)") }
        let seconds = Date().timeIntervalSince(start)
        let arrays = zip(m.outputNames, ys).map { (name: $0, tensor: $1) }
        try write(arrays, to: output, kind: kind)
        let shapes = arrays.map { "\($0.name) \($0.tensor.shape)" }.joined(separator: ", ")
        if json {
            print(
                JSON.object([
                    ("model", .string(model)), ("input", .string(input)), ("output", .string(output)),
                    ("outputs", .object(arrays.map { ($0.name, .array($0.tensor.shape.map { .int($0) })) })),
                    ("seconds", .number(seconds)),
                ]).text)
        } else {
            note(String(format: "ran %@ on %@ %@ in %.1f ms; wrote %@: %@", model, input, "\(x.shape)", seconds * 1000, output, shapes))
        }
    }

    /// The image files an argument stands for: itself, the images in a folder, or a glob's matches.
    static func expand(_ argument: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { return [argument] }
            guard let files = try Dataset.images(argument, preprocessing: .imagenet).files else { return [] }
            return files
        }
        guard argument.contains(where: { "*?[".contains($0) }) else { throw CNXError("\(argument): no such file") }
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(argument, 0, nil, &g) == 0 else { throw CNXError("\(argument): no file matches this pattern") }
        var files: [String] = []
        for i in 0..<Int(g.gl_pathc) {
            guard let p = g.gl_pathv[i] else { continue }
            let path = String(cString: p)
            if ImageDecoder.extensions.contains((path as NSString).pathExtension.lowercased()) { files.append(path) }
        }
        guard !files.isEmpty else { throw CNXError("\(argument): no image file matches this pattern") }
        return files
    }

    /// Runs every image; returns whether any failed.
    func runImages() throws -> Bool {
        // Which images, each argument expanded; an argument that gives none is an error for it alone.
        var files: [String] = [], errors: [(file: String, message: String)] = []
        for argument in images {
            do { files += try Self.expand(argument) } catch let e as CNXError { errors.append((argument, e.message)) }
        }
        // Not one image to run (a mistyped name): say so in one line, without loading the model
        // first (the JSON report keeps its per-file entries).
        if files.isEmpty, !errors.isEmpty, !json, FileManager.default.fileExists(atPath: model) {
            throw CNXError(errors.map(\.message).joined(separator: "; "))
        }
        let (m, loaded) = try Models.load(model, threads: threads, fast: true)
        let kind = output.map { outputKind($0, outputs: m.outputNames.count) }
        if let output, let kind {
            try OutputGuard.check(
                output: output, kind: kind,
                reads: OutputGuard.modelFiles(model, graphMetadata: loaded.graph.metadata)
                    + files.map { ReadFile($0, role: "an input image") } + (labels.map { [ReadFile($0, role: "the labels file")] } ?? []),
                force: force)
            if kind == .npy && m.outputNames.count > 1 {
                throw CNXError(
                    "\(model) has \(m.outputNames.count) outputs (\(m.outputNames.joined(separator: ", "))): write them with --output FILE.npz"
                )
            }
        }
        let classifier = m.outputNames.count == 1 && (m.graph.outputs[0].shape?.count ?? 2) == 2
        if !classifier && output == nil {
            throw CNXError(
                "\(model) is a backbone (outputs \(m.outputNames.joined(separator: ", "))), with no classes to print: save its feature maps with --output FILE.npz"
            )
        }
        let resolved = try preprocess.resolveWithSources([m])
        let p = resolved.preprocessing
        note(resolved.line)
        if let w = resolved.warning(models: [model]) { note(w) }
        var names: [String]?
        var results: [JSON] = []
        var rows: [[Float]] = Array(repeating: [], count: m.outputNames.count)
        var shapes: [[Int]] = Array(repeating: [], count: m.outputNames.count)
        var done = 0
        for argumentError in errors {
            note("error: \(argumentError.message)")
            results.append(.object([("file", .string(argumentError.file)), ("error", .string(argumentError.message))]))
        }
        let workers = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        var start = 0
        while start < files.count {
            let chunk = Array(files[start..<min(start + 16, files.count)])
            start += chunk.count
            // Each image decoded on its own: one that fails is reported, the others run.
            var tensors = [Tensor?](repeating: nil, count: chunk.count)
            var messages = [String?](repeating: nil, count: chunk.count)
            let lock = NSLock()
            DispatchQueue.concurrentPerform(iterations: min(workers, chunk.count)) { w in
                for i in stride(from: w, to: chunk.count, by: min(workers, chunk.count)) {
                    let result: Result<Tensor, Error> = Result { try p.tensor(path: chunk[i]) }
                    lock.lock()
                    switch result {
                    case .success(let t): tensors[i] = t
                    case .failure(let e):
                        messages[i] = (e as? CNXError)?.inFile(chunk[i]).message ?? "\(chunk[i]): \(e.localizedDescription)"
                    }
                    lock.unlock()
                }
            }
            let good = chunk.indices.filter { tensors[$0] != nil }
            var outputsOfGood: [Tensor] = []
            if !good.isEmpty {
                let per = 3 * p.height * p.width
                let x = Tensor(zeros: .float32, shape: [good.count, 3, p.height, p.width])
                for (k, i) in good.enumerated() { x.copyFloats(from: tensors[i]!, count: per, at: k * per) }
                do { outputsOfGood = try m.predictAll(x) } catch let e as CNXError { throw e.inFile(model) }
            }
            var k = 0
            for i in chunk.indices {
                guard tensors[i] != nil else {
                    let message = messages[i] ?? "\(chunk[i]): cannot read"
                    note("error: \(CNXError(message).escapingControlCharacters.message)")
                    results.append(.object([("file", .string(chunk[i])), ("error", .string(message))]))
                    continue
                }
                var entry: [(String, JSON)] = [("file", .string(chunk[i]))]
                if output != nil { entry.append(("row", .int(done))) }
                for (o, y) in outputsOfGood.enumerated() {
                    let n = y.count / max(good.count, 1)
                    rows[o] += y.floats(k * n..<(k + 1) * n)
                    shapes[o] = Array(y.shape.dropFirst())
                }
                if classifier {
                    let logits = outputsOfGood[0]
                    let classes = logits.count / max(good.count, 1)
                    if names == nil { names = try Classification.classNames(classes: classes, metadata: m.metadata, labelsFile: labels) }
                    let row = Tensor(floats: logits.floats(k * classes..<(k + 1) * classes), shape: [1, classes])
                    let scores = Classification.top(row, k: top, names: names ?? [])[0]
                    entry.append(
                        (
                            "top",
                            .array(
                                scores.map {
                                    .object([("class", .int($0.id)), ("name", .string($0.name)), ("probability", .number($0.probability))])
                                })
                        ))
                    if !json {
                        print(chunk[i] + (output != nil ? " (row \(done))" : ""))
                        for s in scores {
                            let label = s.name == String(s.id) ? "class \(s.id)" : "\(s.name) (\(s.id))"
                            print(String(format: "  %6.2f%%  %@", s.probability * 100, label))
                        }
                    }
                } else if !json {
                    print("\(chunk[i]) (row \(done))")
                }
                results.append(.object(entry))
                k += 1
                done += 1
            }
        }
        let failures = results.count - done
        if let output, let kind, done > 0 {
            let arrays = zip(m.outputNames, zip(rows, shapes)).map { (name: $0, tensor: Tensor(floats: $1.0, shape: [done] + $1.1)) }
            try write(arrays, to: output, kind: kind)
            note(
                "wrote \(output): " + arrays.map { "\($0.name) \($0.tensor.shape)" }.joined(separator: ", ")
                    + (failures > 0 ? " (\(done) of \(done + failures) images; the failed ones have no row)" : ""))
        } else if let output, done == 0 {
            note("error: no image could be read; \(output) not written")
        }
        if json {
            var o: [(String, JSON)] = [("model", .string(model)), ("preprocessing", resolved.json)]
            if let output { o.append(("output", done > 0 ? .string(output) : .null)) }
            o += [("images", .array(results)), ("failed", .int(failures))]
            print(JSON.object(o).text)
        }
        return failures > 0
    }
}
