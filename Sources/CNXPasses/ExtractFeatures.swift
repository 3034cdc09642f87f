import CNXGraph
import CNXReference

/// Turns an optimised classifier into a backbone: the head goes, and the chosen stages' outputs
/// become the graph's outputs, named `stage0`...`stage3`, channels-first (N x C x H x W) as
/// PyTorch gives them. A stage is a run of fused blocks of one width; its output is its last
/// block's. Runs after the pipeline, on fused graphs only: it refuses a graph whose blocks did
/// not fuse rather than guess where the stages end.
public enum ExtractFeatures {
    public static func apply(_ graph: inout Graph, stages wanted: [Int]) throws {
        guard !wanted.isEmpty else { throw CNXError("--features needs at least one stage") }
        let index = GraphIndex(graph)
        let facts = try ShapeInference.infer(graph)
        // Runs of blocks, split where the width changes or a downsample intervenes.
        var stages: [[Int]] = []
        var lastWidth: Int?
        for (i, node) in graph.nodes.enumerated() where node.op == .block || node.op == .downsample {
            if node.op == .downsample { lastWidth = nil; continue }
            let width = facts[node.outputs[0]]?.shape?.last?.value
            if width == nil || width != lastWidth || stages.isEmpty {
                stages.append([i])
            } else {
                stages[stages.count - 1].append(i)
            }
            lastWidth = width
        }
        guard !stages.isEmpty else {
            throw CNXError(
                "no fused ConvNeXt blocks in this graph, so its stages are unknown; --features needs a model the converter recognises")
        }
        for s in wanted where s < 0 || s >= stages.count {
            throw CNXError("--features: stage \(s) does not exist; this model has stages 0...\(stages.count - 1)")
        }
        var outputs: [ValueInfo] = []
        var added: [(after: Int, node: Node)] = []
        for s in wanted {
            let last = stages[s].last!
            let value = graph.nodes[last].outputs[0]
            let name = "stage\(s)"
            let nhwc = facts[value]?.shape
            let nchw = nhwc.map { [$0[0], $0[3], $0[1], $0[2]] }
            added.append(
                (
                    last,
                    FeaturesPayload(kind: .none, epsilon: 1e-6).node(
                        name: "\(name).features", input: value, scale: nil, shift: nil, outputs: [name])
                ))
            outputs.append(ValueInfo(name: name, dtype: .float32, shape: nchw))
        }
        _ = index
        for (after, node) in added.sorted(by: { $0.after > $1.after }) { graph.nodes.insert(node, at: after + 1) }
        graph.outputs = outputs
        graph.removeDeadCode()
        try Verifier.verify(graph)
    }
}
