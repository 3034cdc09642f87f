import CNXFormat
import CNXGraph
import Foundation

/// A ConvNeXt model ready to run: load a `.cnx` once, then call `predict` from any number of
/// threads.
///
///     let model = try Model(path: "convnext_tiny.cnx")
///     let logits = try model.predict(batch)          // batch: float32 [N, 3, H, W]
///
/// Loading maps the file, packs the pointwise weights for the GEMM kernels and lets the mapped
/// pages go; predicting allocates only activations and per-thread scratch (reuse a `Workspace`
/// to skip even that).
public final class Model: @unchecked Sendable {
    /// The optimised graph the model runs.
    public let graph: Graph
    /// The file's metadata: architecture, variant, preprocessing, source, passes.
    public let metadata: [String: MetadataValue]
    /// Threads each prediction uses.
    public let threads: Int
    private let executor: FastExecutor

    /// Loads a `.cnx` file. `threads` defaults to the number of cores.
    /// - Throws: `CNXError` naming the file and the section, tensor or offset at fault.
    public convenience init(path: String, threads: Int? = nil) throws {
        let file = try CNXReader.load(path: path)
        // Checking the checksums read every page; let them go before packing reads them again
        // one weight at a time.
        for t in file.graph.initializers.values { t.storage.dropPages() }
        try self.init(graph: file.graph, metadata: file.metadata, threads: threads)
    }

    /// Wraps an in-memory graph (optimised or not: unfused operations run on the reference kernels).
    public init(graph: Graph, metadata: [String: MetadataValue] = [:], threads: Int? = nil) throws {
        self.graph = graph
        self.metadata = metadata
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        executor = try FastExecutor(graph: graph, threads: self.threads)
    }

    /// Name of the graph's (first) input.
    public var inputName: String { graph.inputs.first?.name ?? "" }
    /// Names of the graph's outputs, in order.
    public var outputNames: [String] { graph.outputs.map(\.name) }

    /// Scratch memory for predictions; keep one per thread to avoid reallocating it per call.
    public final class Workspace: @unchecked Sendable {
        let scratch: [Scratch]
        init(threads: Int) { scratch = (0..<threads).map { _ in Scratch(slots: 8) } }
    }

    public func makeWorkspace() -> Workspace { Workspace(threads: threads) }

    /// Runs the model on a float32 NCHW batch and returns its first output (the logits).
    public func predict(_ input: Tensor, workspace: Workspace? = nil) throws -> Tensor {
        let outputs = try predictAll([inputName: input], workspace: workspace)
        guard let first = graph.outputs.first, let y = outputs[first.name] else { throw CNXError("the model has no output") }
        return y
    }

    /// Runs the model and returns every graph output by name. An `observer` sees the inputs of
    /// every float32 pointwise layer of the fused blocks (calibration for int8).
    public func predictAll(_ inputs: [String: Tensor], workspace: Workspace? = nil, observer: ActivationObserver? = nil) throws -> [String:
        Tensor]
    {
        for info in graph.inputs {
            guard let t = inputs[info.name] else { throw CNXError("missing input '\(info.name)'") }
            guard t.dtype == .float32 else { throw CNXError("input '\(info.name)' must be float32, got \(t.dtype.name)") }
            if let shape = info.shape {
                guard shape.count == t.shape.count, zip(shape, t.shape).allSatisfy({ $0.value == nil || $0.value == $1 }) else {
                    throw CNXError("input '\(info.name)' must have shape \(describe(shape)), got \(t.shape)")
                }
            }
            if t.shape.count == 4, graph.nodes.contains(where: { $0.op == .stem || $0.op == .downsample }),
                t.shape[2] % 32 != 0 || t.shape[3] % 32 != 0
            {
                throw CNXError("input '\(info.name)' is \(t.shape[2])x\(t.shape[3]); height and width must be multiples of 32")
            }
        }
        let ws = workspace ?? makeWorkspace()
        return try executor.run(inputs, scratch: ws.scratch, observer: observer)
    }
}
