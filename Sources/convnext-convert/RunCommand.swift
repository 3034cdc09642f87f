import ArgumentParser
import CNXConvert
import CNXFormat
import CNXGraph
import CNXRuntime
import Foundation

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
