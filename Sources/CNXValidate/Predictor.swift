import CNXFormat
import CNXGraph
import CNXReference
import CNXRuntime
import Foundation

/// A model as `validate` and `run` use it: a batch in, logits out, and what it runs on.
public struct Predictor: @unchecked Sendable {
    /// The file it came from.
    public var path: String
    /// What executes it, for reports: "cnx fast runtime" or "reference executor".
    public var runtime: String
    /// The graph it runs.
    public var graph: Graph
    /// Metadata of a `.cnx` (empty for other files).
    public var metadata: [String: MetadataValue]
    /// Names of the graph's outputs, in order.
    public var outputNames: [String] { graph.outputs.map(\.name) }
    private let body: (Tensor) throws -> [String: Tensor]

    /// A predictor whose `run` gives the first output (the logits) only.
    public init(
        path: String, runtime: String, graph: Graph, metadata: [String: MetadataValue] = [:], run: @escaping (Tensor) throws -> Tensor
    ) {
        let first = graph.outputs.first?.name ?? ""
        self.init(path: path, runtime: runtime, graph: graph, metadata: metadata, runAll: { [first: try run($0)] })
    }

    /// A predictor whose `runAll` gives every graph output by name.
    public init(
        path: String, runtime: String, graph: Graph, metadata: [String: MetadataValue] = [:],
        runAll: @escaping (Tensor) throws -> [String: Tensor]
    ) {
        self.path = path
        self.runtime = runtime
        self.graph = graph
        self.metadata = metadata
        body = runAll
    }

    /// The fast runtime of a loaded `.cnx`.
    public static func fast(_ model: Model, path: String) -> Predictor {
        let workspace = model.makeWorkspace()
        return Predictor(
            path: path, runtime: "cnx fast runtime, \(model.threads) thread\(model.threads == 1 ? "" : "s")",
            graph: model.graph, metadata: model.metadata
        ) { try model.predictAll([model.inputName: $0], workspace: workspace) }
    }

    /// The reference executor on a graph as the file has it, unoptimised: the source's own arithmetic.
    public static func reference(graph: Graph, path: String, metadata: [String: MetadataValue] = [:]) -> Predictor {
        let executor = ReferenceExecutor(graph: graph)
        return Predictor(path: path, runtime: "reference executor", graph: graph, metadata: metadata) { x in
            guard let input = graph.inputs.first?.name, !graph.outputs.isEmpty else {
                throw CNXError("the graph has no input or no output")
            }
            return try executor.run([input: x])
        }
    }

    /// The batch size the graph's input fixes, if it fixes one.
    public var fixedBatch: Int? { graph.inputs.first?.shape?.first?.value }

    /// Height and width the graph's input fixes, if it fixes them.
    public var fixedSize: (height: Int, width: Int)? {
        guard let s = graph.inputs.first?.shape, s.count == 4, let h = s[2].value, let w = s[3].value else { return nil }
        return (h, w)
    }

    /// Number of classes, when the graph's output shape says it.
    public var classes: Int? {
        guard let s = graph.outputs.first?.shape, s.count >= 2 else { return nil }
        return s[1].value
    }

    /// Logits [n, classes] of a batch [n, 3, H, W]: the first output. A graph with a fixed batch
    /// size gets the batch in pieces of that size, the last one padded with copies of the first sample.
    public func predict(_ x: Tensor) throws -> Tensor {
        let n = x.shape[0]
        guard let first = graph.outputs.first?.name else { throw CNXError("\(path): the graph has no output") }
        let y = try predictAll(x, names: [first])[0]
        let cols = y.count / max(n, 1)
        guard y.count == n * cols, y.shape.dropFirst().allSatisfy({ $0 == cols || $0 == 1 }) else {
            throw CNXError("\(path): the output has shape \(y.shape); logits [N, classes] were expected")
        }
        return y.reshaped([n, cols])
    }

    /// Every output named in `names` (default: all, in graph order) of a batch [n, 3, H, W], each
    /// float32 with n as its first dimension. A fixed batch size is handled as in `predict`.
    public func predictAll(_ x: Tensor, names: [String]? = nil) throws -> [Tensor] {
        let names = names ?? outputNames
        let n = x.shape[0]
        func pick(_ all: [String: Tensor], batch: Int) throws -> [Tensor] {
            try names.map { name in
                guard let y = all[name] else { throw CNXError("\(path): output '\(name)' was not computed") }
                guard y.dtype == .float32, y.shape.first == batch else {
                    throw CNXError("\(path): output '\(name)' has shape \(y.shape) for a batch of \(batch)")
                }
                return y
            }
        }
        guard let b = fixedBatch, b != n else { return try pick(try body(x), batch: n) }
        let per = x.count / max(n, 1)
        var parts: [[Float]] = Array(repeating: [], count: names.count)
        var shapes: [[Int]] = Array(repeating: [], count: names.count)
        var start = 0
        while start < n {
            let piece = Tensor(zeros: .float32, shape: [b] + Array(x.shape.dropFirst()))
            let take = min(b, n - start)
            piece.copyFloats(from: x, offset: start * per, count: take * per)
            // A short last batch is padded with copies of the first sample.
            for i in take..<b { piece.copyFloats(from: x, count: per, at: i * per) }
            for (k, out) in try pick(try body(piece), batch: b).enumerated() {
                parts[k] += out.floats.prefix(take * (out.count / b))
                shapes[k] = Array(out.shape.dropFirst())
            }
            start += take
        }
        return zip(parts, shapes).map { Tensor(floats: $0, shape: [n] + $1) }
    }
}
