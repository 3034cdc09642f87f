/// Checks that a graph is well formed: every value is defined once, before it is read; every op
/// has the inputs it needs; the graph's outputs exist; shapes are consistent.
public enum Verifier {
    /// (minimum, maximum) input counts of each op.
    static func arity(_ op: OpType) -> ClosedRange<Int> {
        switch op {
        case .add, .sub, .mul, .div, .pow, .matMul, .expand: return 2...2
        case .sqrt, .erf, .tanh, .relu, .sigmoid, .neg, .reciprocal, .gelu, .swish, .globalAveragePool,
             .transpose, .flatten, .shape, .identity, .cast, .constantOfShape: return 1...1
        case .conv, .gemm, .layerNormalization: return (op == .layerNormalization ? 2 : 2)...3
        case .reduceMean, .reduceL2, .reduceSum, .reduceProd, .squeeze, .unsqueeze: return 1...2
        case .rmsNormalization, .simpleNorm: return 2...2
        case .reshape, .gather: return 2...2
        case .range: return 3...3
        case .slice: return 1...5
        case .dropout: return 1...3
        case .concat: return 1...Int.max
        case .constant: return 0...0
        case .linear: return 2...3
        case .grn: return 3...3
        case .stem: return 3...5
        case .downsample: return 3...5
        case .block: return 7...9
        case .head: return 1...7
        case .features: return 1...3
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
            guard arity(node.op).contains(node.inputs.count) else {
                throw CNXError("\(node.label) has \(node.inputs.count) inputs; \(node.op.rawValue) takes \(arity(node.op))")
            }
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
