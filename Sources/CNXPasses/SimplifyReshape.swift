import CNXGraph

/// Removes reshapes that do nothing and merges reshapes in a row: `Reshape(Reshape(x, a), b)`
/// is `Reshape(x, b)` when b has no 0 entries (which would copy a's dimensions), and a Reshape
/// (or Flatten, Squeeze, Unsqueeze) whose result has its input's shape, symbols included, is
/// its input.
public struct SimplifyReshape: RepeatedRewrite {
    public let name = "simplify-reshape"
    public let summary = "merge consecutive reshapes; drop reshapes to the same shape"

    public init() {}

    static let reshaping: Set<OpType> = [.reshape, .flatten, .squeeze, .unsqueeze]

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        guard let facts = try? ShapeInference.infer(g) else { return false }
        for (i, node) in g.nodes.enumerated() where Self.reshaping.contains(node.op) {
            let out = node.outputs[0]
            if let a = facts[node.inputs[0]]?.shape, let b = facts[out]?.shape, a == b, !a.contains(.unknown),
                !index.graphOutputs.contains(out)
            {
                g.replace([i], with: [])
                g.rewire(out, to: node.inputs[0])
                return true
            }
            if node.op == .reshape, let inner = index.producer(node.inputs[0]), Self.reshaping.contains(inner.node.op),
                let target = index.constant(node.inputs[1]), target.dtype == .int64, !target.int64s.contains(0)
            {
                var merged = node
                merged.inputs[0] = inner.node.inputs[0]
                g.replace([i], with: [merged])
                return true
            }
        }
        return false
    }
}
