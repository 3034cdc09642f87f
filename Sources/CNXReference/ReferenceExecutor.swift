import CKernels
import CNXGraph
import Foundation

/// Executes a `Graph` node by node, simply and correctly: the oracle that every optimised path
/// of the project is compared with. Values are freed after their last reader.
public final class ReferenceExecutor: @unchecked Sendable {
    public let graph: Graph
    /// How many nodes read each value; a value no node reads after its last use is released.
    private let readers: [String: Int]
    private let outputNames: Set<String>

    public init(graph: Graph) {
        self.graph = graph
        var readers: [String: Int] = [:]
        for n in graph.nodes {
            for i in n.inputs where !i.isEmpty { readers[i, default: 0] += 1 }
        }
        self.readers = readers
        outputNames = Set(graph.outputs.map(\.name))
    }

    /// Runs the graph. `inputs` maps graph input names to tensors; the result maps every graph
    /// output name to its tensor.
    public func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
        var values = graph.initializers
        for info in graph.inputs {
            guard let t = inputs[info.name] else { throw CNXError("missing input '\(info.name)'") }
            guard t.dtype == info.dtype || (info.dtype == .float16 && t.dtype == .float32) else {
                throw CNXError("input '\(info.name)' must be \(info.dtype.name), got \(t.dtype.name)")
            }
            if let shape = info.shape {
                guard shape.count == t.shape.count else {
                    throw CNXError("input '\(info.name)' must have rank \(shape.count) \(describe(shape)), got \(t.shape)")
                }
                for (d, v) in zip(shape, t.shape) {
                    if let fixed = d.value, fixed != v {
                        throw CNXError("input '\(info.name)' must have shape \(describe(shape)), got \(t.shape)")
                    }
                }
            }
            values[info.name] = t
        }
        var remaining = readers
        for node in graph.nodes {
            var args: [Tensor?] = []
            for name in node.inputs {
                if name.isEmpty { args.append(nil); continue }
                guard let v = values[name] else {
                    throw CNXError("\(node.label) reads '\(name)', which nothing computed before it")
                }
                args.append(v)
            }
            let results: [Tensor]
            do {
                results = try ReferenceKernels.evaluate(node, args)
            } catch let e as CNXError {
                throw CNXError("\(node.label): \(e.message)")
            }
            for (name, t) in zip(node.outputs, results) where !name.isEmpty { values[name] = t }
            for name in node.inputs where !name.isEmpty {
                remaining[name, default: 0] -= 1
                if remaining[name] == 0 && !outputNames.contains(name) && graph.initializers[name] == nil {
                    values[name] = nil
                }
            }
        }
        var out: [String: Tensor] = [:]
        for o in graph.outputs {
            guard let t = values[o.name] else { throw CNXError("graph output '\(o.name)' was never computed") }
            out[o.name] = t
        }
        return out
    }
}

extension ReferenceExecutor {
    /// Evaluates one node on the given inputs (nil for an omitted optional input): the passes
    /// use it to fold constants with exactly the arithmetic the executor uses.
    public static func evaluate(_ node: Node, _ inputs: [Tensor?]) throws -> [Tensor] {
        try ReferenceKernels.evaluate(node, inputs)
    }
}
