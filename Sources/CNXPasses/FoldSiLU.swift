import CNXGraph

/// Folds SiLU, which the exporters write as `x * Sigmoid(x)` (the product in either order),
/// into one `Swish` node (alpha 1): the activation of timm's SiLU models (`test_convnext3`)
/// and of their overlapping stems. The Sigmoid's result must have no other reader.
public struct FoldSiLU: RepeatedRewrite {
    public let name = "fold-silu"
    public let summary = "x * Sigmoid(x) -> Swish (SiLU)"

    public init() {}

    public func rewriteOnce(_ g: inout Graph, _ index: GraphIndex) -> Bool {
        for (i, sigmoid) in g.nodes.enumerated() where sigmoid.op == .sigmoid {
            let x = sigmoid.inputs[0]
            guard let mul = index.soleConsumer(sigmoid.outputs[0], .mul), index.other(mul.node, than: sigmoid.outputs[0]) == x,
                mul.node.inputs[0] != mul.node.inputs[1]
            else { continue }
            g.replace(
                [i, mul.index],
                with: [Node(name: sigmoid.name, op: .swish, inputs: [x], outputs: mul.node.outputs, attributes: ["alpha": .float(1)])])
            return true
        }
        return false
    }
}
