import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import CNXValidate
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images, or run a model on a float32 NCHW .npy batch and write its output (logits) as .npy.",
        discussion: """
          convnext-convert run model.cnx photo.jpg other.png --top 5
          convnext-convert run model.cnx --input x.npy --output logits.npy

        Images are resized, centre-cropped and normalised as the model says (see `validate --help`). Class names: --labels FILE (one a line), else the .cnx's general.class_names, else ImageNet-1K's for a 1000-class model, else the class numbers.
        """)

    @Argument(help: "The model file (.cnx or .onnx).")
    var model: String

    @Argument(help: "Images to classify (JPEG or PNG).")
    var images: [String] = []

    @Option(name: .long, help: "Input batch: float32 .npy of shape N x 3 x H x W, preprocessed.")
    var input: String?

    @Option(name: .long, help: "Where to write the output: float32 .npy, or .npz with every output of a model that has several (a backbone's stages), named by output.")
    var output: String?

    @Option(name: .long, help: "How many classes to print for each image.")
    var top = 5

    @Option(name: .long, help: "Class names, one a line, in class-id order.")
    var labels: String?

    @OptionGroup var preprocess: PreprocessOptions

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if images.isEmpty {
            guard input != nil, output != nil else {
                throw ValidationError("give images to classify, or --input X.npy and --output Y.npy")
            }
        } else if input != nil || output != nil {
            throw ValidationError("give images to classify or --input/--output, not both")
        }
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            if let input, let output {
                try runBatch(input: input, output: output)
            } else {
                try classify()
            }
        }
    }

    func runBatch(input: String, output: String) throws {
        let loaded = try ModelLoader.load(model)
        let x = try NPY.read(path: input)
        guard x.dtype == .float32 else { throw CNXError("\(input): the input must be float32, got \(x.dtype.name)") }
        guard loaded.graph.inputs.count == 1, let name = loaded.graph.inputs.first?.name else {
            throw CNXError("\(model): expected one graph input, found \(loaded.graph.inputs.count)")
        }
        let npz = output.lowercased().hasSuffix(".npz")
        let names = loaded.graph.outputs.map(\.name)
        guard npz || names.count == 1 else {
            throw CNXError("\(model) has \(names.count) outputs (\(names.joined(separator: ", "))): write them with --output FILE.npz")
        }
        let start = Date()
        let result: [String: Tensor]
        do {
            if loaded.format == "cnx" {
                result = try Model(graph: loaded.graph, metadata: loaded.metadata, threads: threads).predictAll([name: x])
            } else {
                result = try ReferenceExecutor(graph: loaded.graph).run([name: x])
            }
        } catch let e as CNXError {
            throw CNXError("\(model) on \(input): \(e.message)")
        }
        let seconds = Date().timeIntervalSince(start)
        let arrays = try names.map { n -> (name: String, tensor: Tensor) in
            guard let t = result[n] else { throw CNXError("\(model): output '\(n)' was not computed") }
            return (n, t)
        }
        if npz {
            try NPZ.write(arrays, path: output)
        } else {
            try NPY.write(arrays[0].tensor, path: output)
        }
        let shapes = arrays.map { "\($0.name) \($0.tensor.shape)" }.joined(separator: ", ")
        note(String(format: "ran %@ on %@ %@ in %.1f ms; wrote %@: %@", model, input, "\(x.shape)", seconds * 1000, output, shapes))
    }

    func classify() throws {
        let (m, _) = try Models.load(model, threads: threads, fast: true)
        let dataset = try Dataset.files(images, preprocessing: try preprocess.resolve([m]))
        dataset.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        var names: [String]?
        var start = 0
        while start < dataset.count {
            let range = start..<min(start + 16, dataset.count)
            let x = try dataset.batch(range)
            let logits: Tensor
            do { logits = try m.predict(x) } catch let e as CNXError { throw e.inFile(model) }
            let classes = logits.shape[1]
            if names == nil { names = try Classification.classNames(classes: classes, metadata: m.metadata, labelsFile: labels) }
            for (i, scores) in Classification.top(logits, k: top, names: names ?? []).enumerated() {
                print(images[range.lowerBound + i])
                for s in scores {
                    let label = s.name == String(s.id) ? "class \(s.id)" : "\(s.name) (\(s.id))"
                    print(String(format: "  %6.2f%%  %@", s.probability * 100, label))
                }
            }
            start = range.upperBound
        }
    }
}
