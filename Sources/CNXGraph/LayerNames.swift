/// The one vocabulary for the layers of a fused ConvNeXt graph, used by `inspect`,
/// `validate --per-layer`, `quantize --sensitivity` / `--keep-float`, JSON reports and `.cnx`
/// metadata: `stem`, `stages.S.downsample`, `stages.S.blocks.J` (its pointwise layers
/// `stages.S.blocks.J.pw1` and `.pw2`), `head`, numbered as timm numbers its modules.
///
/// A stage is a run of blocks of one width; a downsample starts the next stage.
public enum LayerNames {
    /// The name of every fused stem, downsample, block and head node, by node index.
    public static func fused(_ graph: Graph) -> [Int: String] {
        var names: [Int: String] = [:]
        var stage = -1, block = 0
        var lastWidth: Int?
        for (i, node) in graph.nodes.enumerated() {
            switch node.op {
            case .stem:
                names[i] = "stem"
            case .head:
                names[i] = "head"
            case .downsample:
                names[i] = "stages.\(stage + 1).downsample"
                lastWidth = nil
            case .block:
                let width = node.input("dw_weight").flatMap { graph.initializers[$0] }?.shape.last
                if width != lastWidth || stage < 0 { stage += 1; block = 0 } else { block += 1 }
                lastWidth = width
                names[i] = "stages.\(stage).blocks.\(block)"
            default:
                break
            }
        }
        return names
    }

    /// The names `fused` gives, for a model of these depths (before it is optimised): the stem,
    /// each stage's downsample (from stage 1) and blocks, and the head when it has one.
    public static func expected(depths: [Int], head: Bool) -> [String] {
        var names = ["stem"]
        for (s, d) in depths.enumerated() {
            if s > 0 { names.append("stages.\(s).downsample") }
            names += (0..<d).map { "stages.\(s).blocks.\($0)" }
        }
        if head { names.append("head") }
        return names
    }
}
