import ArgumentParser
import CNXGraph
import CNXImport
import CNXRuntime
import Foundation

/// Errors reach the user as one line on stderr and exit status 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
}

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

struct ConvnextConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convnext-convert",
        abstract: "Convert, inspect and run ConvNeXt models exported from PyTorch.",
        discussion: """
        Reads ONNX files (with external data beside them). Examples:
          convnext-convert inspect model.onnx
          convnext-convert run model.onnx --input x.npy --output logits.npy
        """,
        subcommands: [Inspect.self, Run.self]
    )
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: producer, opset, operators, parameters, inputs, outputs and architecture.")

    @Argument(help: "The model file (.onnx).")
    var model: String

    func run() throws {
        try reportingErrors {
            let graph = try ModelLoader.load(model)
            print(Report.inspect(graph, path: model))
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a float32 NCHW .npy batch and write its output (logits) as .npy.")

    @Argument(help: "The model file (.onnx).")
    var model: String

    @Option(name: .long, help: "Input batch: float32 .npy of shape N x 3 x H x W, preprocessed.")
    var input: String

    @Option(name: .long, help: "Where to write the output (float32 .npy).")
    var output: String

    func run() throws {
        try reportingErrors {
            let graph = try ModelLoader.load(model)
            let x = try NPY.read(path: input)
            guard x.dtype == .float32 else { throw CNXError("\(input): the input must be float32, got \(x.dtype.name)") }
            guard graph.inputs.count == 1, let name = graph.inputs.first?.name else {
                throw CNXError("\(model): expected one graph input, found \(graph.inputs.count)")
            }
            let start = Date()
            let result: [String: Tensor]
            do {
                result = try ReferenceExecutor(graph: graph).run([name: x])
            } catch let e as CNXError {
                throw CNXError("\(model) on \(input): \(e.message)")
            }
            let seconds = Date().timeIntervalSince(start)
            guard let outName = graph.outputs.first?.name, let y = result[outName] else {
                throw CNXError("\(model): the graph has no output")
            }
            try NPY.write(y, path: output)
            FileHandle.standardError.write(Data(String(format: "ran %@ on %@ %@ in %.1f ms; wrote %@ %@\n",
                model, input, "\(x.shape)", seconds * 1000, output, "\(y.shape)").utf8))
        }
    }
}

ConvnextConvert.main()
