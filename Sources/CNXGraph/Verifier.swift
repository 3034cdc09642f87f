/// Checks that a graph is well formed: every value is defined once, before it is read; every op
/// has the inputs it needs; the graph's outputs exist; shapes are consistent.
public enum Verifier {
    /// Checks one node against its operation's schema: input and output counts, required inputs
    /// present, attributes of the declared kind, required attributes present (an int8 layer's
    /// quantization attributes when its weight, a constant of `graph`, is int8), and no int8
    /// tensor in a slot that does not take one. Errors name the node and its op.
    public static func check(_ node: Node, in graph: Graph) throws {
        let schema = node.schema
        guard schema.arity.contains(node.inputs.count) else {
            throw CNXError("\(node.label) has \(node.inputs.count) inputs; \(node.op.rawValue) takes \(schema.arityDescription)")
        }
        for (i, slot) in schema.inputs.enumerated() where slot.required && i < node.inputs.count && node.inputs[i].isEmpty {
            throw CNXError("\(node.label) leaves out input \(i) (\(slot.name)), which \(node.op.rawValue) requires")
        }
        guard node.outputs.count <= schema.outputs.count else {
            throw CNXError(
                "\(node.label) has \(node.outputs.count) outputs; \(node.op.rawValue) gives at most \(schema.outputs.count) (\(schema.outputs.joined(separator: ", ")))"
            )
        }
        for name in node.attributes.keys.sorted() {
            let kind = node.attributes[name]!.kind
            guard let a = schema.attribute(name) else {
                if schema.closedAttributes {
                    throw CNXError("\(node.label) has attribute '\(name)', which \(node.op.rawValue) does not take")
                }
                continue
            }
            guard a.kind == kind else {
                throw CNXError("\(node.label): attribute '\(name)' is \(kind.rawValue); \(node.op.rawValue) takes \(a.kind.rawValue)")
            }
        }
        func constant(_ slot: String) -> Tensor? { node.input(slot).flatMap { graph.initializers[$0] } }
        for a in schema.attributes where node.attributes[a.name] == nil {
            switch a.requirement {
            case .optional: continue
            case .required:
                throw CNXError("\(node.label) lacks attribute '\(a.name)' (\(a.kind.rawValue)), which \(node.op.rawValue) requires")
            case .whenInt8(let slot):
                if constant(slot)?.dtype == .int8 {
                    throw CNXError("\(node.label): input '\(slot)' is int8 but attribute '\(a.name)' is missing")
                }
            }
        }
        for (i, slot) in schema.inputs.enumerated() where i < node.inputs.count {
            guard let allowed = slot.dtypes, let t = graph.initializers[node.inputs[i]], t.dtype == .int8, !allowed.contains(.int8) else {
                continue
            }
            throw CNXError("\(node.label): input \(i) (\(slot.name)) is int8, which \(node.op.rawValue) does not take there")
        }
    }

    /// Throws the first problem found, naming the node; returns the inferred facts otherwise.
    @discardableResult
    public static func verify(_ graph: Graph) throws -> [String: ValueFacts] {
        var defined = Set(graph.initializers.keys)
        for v in graph.inputs {
            guard !defined.contains(v.name) else { throw CNXError("input '\(v.name)' is defined twice") }
            defined.insert(v.name)
        }
        for node in graph.nodes {
            try check(node, in: graph)
            for i in node.inputs where !i.isEmpty && !defined.contains(i) {
                throw CNXError("\(node.label) reads '\(i)', which is not defined before it")
            }
            guard !node.outputs.isEmpty, !node.outputs[0].isEmpty else { throw CNXError("\(node.label) has no output") }
            for o in node.outputs where !o.isEmpty {
                guard !defined.contains(o) else { throw CNXError("\(node.label) writes '\(o)', which is already defined") }
                defined.insert(o)
            }
        }
        for o in graph.outputs where !defined.contains(o.name) {
            throw CNXError("graph output '\(o.name)' is never computed")
        }
        let facts = try ShapeInference.infer(graph)
        for o in graph.outputs {
            guard let declared = o.shape, let inferred = facts[o.name]?.shape else { continue }
            guard declared.count == inferred.count else {
                throw CNXError("graph output '\(o.name)' is declared \(describe(declared)) but computes \(describe(inferred))")
            }
            for (d, i) in zip(declared, inferred) {
                if let a = d.value, let b = i.value, a != b {
                    throw CNXError("graph output '\(o.name)' is declared \(describe(declared)) but computes \(describe(inferred))")
                }
            }
        }
        return facts
    }
}
