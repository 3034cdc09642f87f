/// What a graph is, read off its meaning: the depthwise convolutions (stride 1, any odd kernel:
/// 7x7 in most models, 5x5 and 3x3 in some of timm's) are the blocks, the channel count of each
/// block gives the stages, the first convolution gives the stem, the head's last matrix gives the
/// classes when the output is that matrix's product (a headless model hands out pooled features,
/// after a norm or an MLP head's activation: no classes). Nothing here depends on node names.
public struct Architecture: Equatable, Sendable {
    public var family: String
    public var variant: String?
    public var depths: [Int]
    public var dims: [Int]
    public var classes: Int?
    public var stem: String
    public var grn: Bool

    public init(family: String, variant: String?, depths: [Int], dims: [Int], classes: Int?, stem: String, grn: Bool) {
        (self.family, self.variant, self.depths, self.dims) = (family, variant, depths, dims)
        (self.classes, self.stem, self.grn) = (classes, stem, grn)
    }

    /// (name, depths, dims) of the published ConvNeXt variants.
    static let variants: [(String, [Int], [Int])] = [
        ("atto", [2, 2, 6, 2], [40, 80, 160, 320]),
        ("femto", [2, 2, 6, 2], [48, 96, 192, 384]),
        ("pico", [2, 2, 6, 2], [64, 128, 256, 512]),
        ("nano", [2, 2, 8, 2], [80, 160, 320, 640]),
        ("tiny", [3, 3, 9, 3], [96, 192, 384, 768]),
        ("small", [3, 3, 27, 3], [96, 192, 384, 768]),
        ("base", [3, 3, 27, 3], [128, 256, 512, 1024]),
        ("large", [3, 3, 27, 3], [192, 384, 768, 1536]),
        ("xlarge", [3, 3, 27, 3], [256, 512, 1024, 2048]),
        ("xxlarge", [3, 4, 30, 3], [384, 768, 1536, 3072]),
        ("huge", [3, 3, 27, 3], [352, 704, 1408, 2816]),
    ]
    static let isotropicVariants: [(String, Int, Int)] = [("small", 18, 384), ("base", 18, 768), ("large", 36, 1024)]

    /// Recognises a ConvNeXt in `graph`, or returns nil when the graph has no ConvNeXt blocks.
    public static func recognise(_ graph: Graph) -> Architecture? {
        var blockChannels: [Int] = []
        var convs: [(node: Node, weight: [Int])] = []
        for n in graph.nodes where n.op == .conv {
            guard n.inputs.count > 1, let w = graph.initializers[n.inputs[1]], w.shape.count == 4 else { continue }
            convs.append((n, w.shape))
            let group = n.int("group") ?? 1
            let k = w.shape[2], strides = n.ints("strides") ?? [1, 1]
            if w.shape[1] == 1, group == w.shape[0], group > 1, k == w.shape[3], k >= 3, k % 2 == 1, strides.allSatisfy({ $0 == 1 }) {
                blockChannels.append(w.shape[0])
            }
        }
        guard !blockChannels.isEmpty else { return nil }
        var depths: [Int] = [], dims: [Int] = []
        for c in blockChannels {
            if dims.last == c { depths[depths.count - 1] += 1 } else { dims.append(c); depths.append(1) }
        }
        let grn = graph.nodes.contains { $0.op == .reduceL2 }
        var stem = "unknown"
        if let first = convs.first {
            let k = first.weight[2], s = first.node.ints("strides") ?? [1, 1]
            if k == s[0] {
                stem = "patchify \(k)x\(k) stride \(k)"
            } else if convs.count > 1, s[0] == 2, (convs[1].node.ints("strides") ?? [1, 1])[0] == 2 {
                stem = "overlapping: two \(k)x\(k) stride 2"
            } else {
                stem = "\(k)x\(k) stride \(s[0])"
            }
        }
        var classes: Int?
        // Classes only for one output of shape [N, classes]: a backbone's feature maps (N x C x
        // H x W, one per stage) have none.
        if graph.outputs.count == 1, let shape = graph.outputs[0].shape, shape.count == 2, let out = shape[1].value,
            isLinearProduct(graph.outputs[0].name, in: graph)
        {
            classes = out
        }
        let isotropic = dims.count == 1
        var family = grn ? "ConvNeXt V2" : "ConvNeXt"
        var variant: String?
        if isotropic {
            family = "ConvNeXt (isotropic)"
            variant = isotropicVariants.first { $0.1 == depths[0] && $0.2 == dims[0] }.map { "convnext_isotropic_\($0.0)" }
        } else if let v = variants.first(where: { $0.1 == depths && $0.2 == dims }) {
            let prefix = grn ? "convnextv2_" : "convnext_"
            variant = prefix + v.0 + (stem.hasPrefix("overlapping") ? "_ols" : "")
        }
        return Architecture(family: family, variant: variant, depths: depths, dims: dims, classes: classes, stem: stem, grn: grn)
    }

    /// True when `value` is the result of a linear layer with a constant weight, seen through
    /// reshapes: Gemm, MatMul (with a constant bias added or not), a 1x1 convolution, cnx.Linear
    /// without an activation, or a fused head whose last layer is a Linear. A norm's, a pool's or
    /// an activation's result is not.
    static func isLinearProduct(_ value: String, in graph: Graph) -> Bool {
        var producers: [String: Node] = [:]
        for n in graph.nodes { for o in n.outputs { producers[o] = n } }
        let passThrough: Set<OpType> = [.reshape, .flatten, .squeeze, .identity, .dropout]
        var v = value
        while let n = producers[v], passThrough.contains(n.op), let x = n.inputs.first { v = x }
        guard var n = producers[v] else { return false }
        func constant(_ name: String) -> Bool { graph.initializers[name] != nil }
        if n.op == .add, n.inputs.count == 2 {
            // x · W + b: the bias is a constant, the other operand the product.
            guard let i = n.inputs.firstIndex(where: constant), let p = producers[n.inputs[1 - i]] else { return false }
            n = p
        }
        switch n.op {
        case .gemm, .matMul, .conv:
            return n.inputs.count > 1 && constant(n.inputs[1])
        case .linear:
            return n.string("activation") == nil
        case .head:
            // Its last layer W2, or W alone without the activation of an MLP head's hidden layer.
            if n.inputs.count > 3, !n.inputs[3].isEmpty { return true }
            return n.inputs.count > 1 && !n.inputs[1].isEmpty && n.string("activation") == nil
        default:
            return false
        }
    }
}
