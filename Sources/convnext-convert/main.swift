import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

extension ParsableCommand {
    /// Runs `body`, turning the library's errors into one line on stderr and exit status 1.
    func reportingErrors(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as CNXError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

func note(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

struct ConvnextConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convnext-convert",
        abstract: "Convert, inspect, run and benchmark ConvNeXt models exported from PyTorch.",
        discussion: """
        Reads ONNX files (with the external-data file torch writes beside them) and .cnx files.
          convnext-convert model.onnx model.cnx          optimise and write a .cnx (convert is the default)
          convnext-convert inspect model.cnx             what a model file holds
          convnext-convert run model.cnx --input x.npy --output logits.npy
          convnext-convert bench model.cnx --threads 2 --batch 1
        """,
        subcommands: [Convert.self, Inspect.self, Run.self, Bench.self],
        defaultSubcommand: Convert.self
    )
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Optimise a model (fold LayerNorm, GELU, layer scale; fuse blocks) and write a .cnx file.",
        discussion: """
        The optimised graph is checked against the original on a random input before anything is
        written; the output file appears whole or not at all.
        """)

    @Argument(help: "The model to convert (.onnx).")
    var input: String

    @Argument(help: "The .cnx file to write.")
    var output: String

    @Flag(name: .long, help: "Skip the check of the optimised graph against the original.")
    var noVerify = false

    @Flag(name: .shortAndLong, help: "Print what each pass did.")
    var verbose = false

    @Option(name: .long, help: "Print the graph after the named pass (fold-constants, fold-layernorm, fold-gelu, fold-grn, fold-linear, eliminate-transposes, fold-layernorm-affine, fold-layer-scale, fuse-stem, fuse-downsample, fuse-blocks, fuse-head).")
    var dumpAfter: String?

    func run() throws {
        try reportingErrors {
            var options = Converter.Options()
            options.verify = !noVerify
            options.verbose = verbose
            options.dumpAfter = dumpAfter
            let r = try Converter.convert(input: input, output: output, options: options)
            if let a = r.architecture {
                print("model:     \(a.family) \(a.variant ?? "(custom)"), depths \(a.depths), dims \(a.dims), \(a.classes.map { "\($0) classes" } ?? "")")
            } else {
                print("model:     not recognised as ConvNeXt; converted as a generic graph")
            }
            let applied = r.steps.filter { $0.rewrites > 0 }.map { "\($0.pass) (\($0.rewrites))" }
            print("passes:    \(applied.joined(separator: ", "))")
            print("graph:     \(r.nodesBefore) nodes -> \(r.nodesAfter)")
            if let e = r.verificationError { print(String(format: "verified:  relative error %.2e against the original on a random input", e)) }
            print(String(format: "wrote:     %@ (%.1f MB) in %.2f s", output, Double(r.outputBytes) / 1e6, r.seconds))
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model file: producer or metadata, operators, parameters, inputs, outputs, architecture.")

    @Argument(help: "The model file (.onnx or .cnx).")
    var model: String

    func run() throws {
        try reportingErrors {
            let loaded = try ModelLoader.load(model)
            print(Report.inspect(loaded, path: model))
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a float32 NCHW .npy batch and write its output (logits) as .npy.")

    @Argument(help: "The model file (.cnx or .onnx).")
    var model: String

    @Option(name: .long, help: "Input batch: float32 .npy of shape N x 3 x H x W, preprocessed.")
    var input: String

    @Option(name: .long, help: "Where to write the output (float32 .npy).")
    var output: String

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    func run() throws {
        try reportingErrors {
            let loaded = try ModelLoader.load(model)
            let x = try NPY.read(path: input)
            guard x.dtype == .float32 else { throw CNXError("\(input): the input must be float32, got \(x.dtype.name)") }
            guard loaded.graph.inputs.count == 1, let name = loaded.graph.inputs.first?.name else {
                throw CNXError("\(model): expected one graph input, found \(loaded.graph.inputs.count)")
            }
            let start = Date()
            let y: Tensor
            do {
                if loaded.format == "cnx" {
                    y = try Model(graph: loaded.graph, metadata: loaded.metadata, threads: threads).predict(x)
                } else {
                    let result = try ReferenceExecutor(graph: loaded.graph).run([name: x])
                    guard let outName = loaded.graph.outputs.first?.name, let out = result[outName] else { throw CNXError("the graph has no output") }
                    y = out
                }
            } catch let e as CNXError {
                throw CNXError("\(model) on \(input): \(e.message)")
            }
            let seconds = Date().timeIntervalSince(start)
            try NPY.write(y, path: output)
            note(String(format: "ran %@ on %@ %@ in %.1f ms; wrote %@ %@", model, input, "\(x.shape)", seconds * 1000, output, "\(y.shape)"))
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure latency and throughput of a model on random input.",
        discussion: "A .cnx runs on the fast runtime; an .onnx on the reference executor (unoptimised).")

    @Argument(help: "The model file (.cnx or .onnx).")
    var model: String

    @Option(name: .long, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Batch size.")
    var batch = 1

    @Option(name: .long, help: "Timed iterations (after 3 warm-up runs).")
    var iterations = 20

    @Option(name: .long, help: "Input height and width (default: the model's, else 224).")
    var size: Int?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let size, size < 32 || size % 32 != 0 { throw ValidationError("--size must be a positive multiple of 32") }
    }

    func run() throws {
        try reportingErrors {
            let r = try Benchmark.run(model: model, threads: threads, batch: batch, iterations: iterations, size: size)
            if json {
                print(r.json)
            } else {
                print(r.table)
            }
        }
    }
}

ConvnextConvert.main()
