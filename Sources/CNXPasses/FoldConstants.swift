import CNXGraph
import CNXReference

/// Folds constants: a node whose inputs are all constant is evaluated once, by the reference
/// executor's own arithmetic, and becomes a tensor; an int64 value whose every element shape
/// inference knows (a Shape/Gather/Concat chain over fixed dimensions) becomes a tensor; Identity
/// and inference-mode Dropout disappear.
/// Algebraic identities go too: x * 1, x / 1, x + 0 and x - 0 with a constant that does not
/// broadcast x to a larger shape (the legacy exporter writes `addcmul`'s unit value this way).
public struct FoldConstants: Pass {
    public let name = "fold-constants"
    public let summary = "evaluate constant subgraphs and constant shape chains; drop Identity, Dropout, x*1 and x+0"

    public init() {}

    public func run(_ graph: inout Graph) throws -> Int {
        var count = 0
        count += try repeatUntilStable(&graph) { g in try foldOne(&g) }
        count += repeatUntilStable(&graph) { g in dropPassThrough(&g) }
        return count
    }

    private func foldOne(_ g: inout Graph) throws -> Bool {
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        let outputs = Set(g.outputs.map(\.name))
        for (i, node) in g.nodes.enumerated() where !node.op.isFused {
            let constantInputs = node.inputs.allSatisfy { $0.isEmpty || g.initializers[$0] != nil }
            if constantInputs {
                let args = node.inputs.map { $0.isEmpty ? nil : g.initializers[$0] }
                let results = try ReferenceExecutor.evaluate(node, args)
                var tensors: [String: Tensor] = [:]
                for (name, t) in zip(node.outputs, results) where !name.isEmpty {
                    tensors[name] = t.storage.isBorrowed ? t.copy() : t
                }
                // A graph output stays a node's result so the graph keeps its interface.
                guard !node.outputs.contains(where: outputs.contains) else { continue }
                g.replace([i], with: [], adding: tensors)
                return true
            }
            if node.outputs.count == 1, let f = facts[node.outputs[0]], f.dtype == .int64,
                let elements = f.elements, let shape = f.shape, !outputs.contains(node.outputs[0])
            {
                let values = elements.compactMap(\.value)
                let dims = shape.compactMap(\.value)
                guard values.count == elements.count, dims.count == shape.count, dims.reduce(1, *) == values.count else { continue }
                g.replace([i], with: [], adding: [node.outputs[0]: Tensor(int64s: values.map(Int64.init), shape: dims)])
                return true
            }
        }
        return false
    }

    /// The operand that passes through unchanged when the other is a constant identity element.
    private func identityOperand(_ node: Node, _ g: Graph, _ facts: [String: ValueFacts]) -> String? {
        guard [.mul, .div, .add, .sub].contains(node.op), node.inputs.count == 2 else { return nil }
        let neutral: Float = node.op == .mul || node.op == .div ? 1 : 0
        let slots = node.op == .mul || node.op == .add ? [0, 1] : [1]
        for slot in slots {
            guard let c = g.initializers[node.inputs[slot]], c.dtype == .float32, c.floats.allSatisfy({ $0 == neutral }),
                let shape = facts[node.inputs[1 - slot]]?.shape, c.shape.count <= shape.count
            else { continue }
            let tail = shape.suffix(c.shape.count)
            guard zip(c.shape, tail).allSatisfy({ $0 == 1 || Dim.fixed($0) == $1 }) else { continue }
            return node.inputs[1 - slot]
        }
        return nil
    }

    private func dropPassThrough(_ g: inout Graph) -> Bool {
        let outputs = Set(g.outputs.map(\.name))
        let facts = (try? ShapeInference.infer(g)) ?? [:]
        for (i, node) in g.nodes.enumerated() where !outputs.contains(node.outputs[0]) {
            if let source = identityOperand(node, g, facts) {
                g.replace([i], with: [])
                g.rewire(node.outputs[0], to: source)
                return true
            }
        }
        for (i, node) in g.nodes.enumerated() where node.op == .identity || node.op == .dropout {
            guard node.inputs.count >= 1, !node.inputs[0].isEmpty, !outputs.contains(node.outputs[0]),
                node.outputs.dropFirst().allSatisfy({ $0.isEmpty })
            else { continue }
            if node.op == .dropout, node.inputs.count > 2, !node.inputs[2].isEmpty {
                // training_mode given: only a constant false is inference.
                guard let t = g.initializers[node.inputs[2]], t.count == 1, t.dtype == .int64, t.withUnsafeInt64s({ $0[0] }) == 0 else {
                    continue
                }
            }
            let source = node.inputs[0], result = node.outputs[0]
            g.replace([i], with: [])
            g.rewire(result, to: source)
            return true
        }
        return false
    }
}
