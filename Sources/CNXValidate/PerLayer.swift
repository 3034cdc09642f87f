import CNXGraph
import CNXReference
import CNXRuntime
import Foundation

/// One layer (stem, block, downsample or head) of a model compared with the same layer of its
/// reference graph.
public struct LayerComparison: Sendable {
    /// "stem", "stages.1.blocks.2", "stages.2.downsample", "head".
    public var name: String
    /// Shape of the layer's output.
    public var shape: [Int]
    /// SQNR of the model's output of this layer, the whole model run from the input, against the
    /// reference's: the error accumulated up to here.
    public var sqnrDB: Double
    /// SQNR of this layer alone: the model's layer given the reference's input to it, against the
    /// reference's output. The error this layer adds. Nil when the layer's inputs cannot be matched
    /// with reference layers.
    public var localSQNRDB: Double?
    public var maxAbsDiff: Float
    public var cosine: Double
}

/// Compares a model layer by layer with a reference graph of the same architecture (both
/// optimised, so that each ConvNeXt stage is fused into stem, block, downsample and head ops),
/// aligning the layers by their order. A float32 model against its own float32 graph comes out
/// near-exact; an int8 model shows where its error enters.
public enum PerLayer {
    /// The nodes compared: the fused structural ops, in graph order.
    public static func layers(_ graph: Graph) -> [Int] {
        graph.nodes.indices.filter { graph.nodes[$0].op.isFused && graph.nodes[$0].op != .linear && graph.nodes[$0].op != .grn }
    }

    /// The layers' names, in the project's one vocabulary (`LayerNames`): "stem",
    /// "stages.S.blocks.J", "stages.S.downsample", "head", as `--keep-float` takes them.
    public static func names(_ graph: Graph) -> [String] {
        let named = LayerNames.fused(graph)
        return layers(graph).map { named[$0] ?? graph.nodes[$0].name }
    }

    /// The outputs of every compared layer of `graph` on `input`, run on the reference executor.
    static func capture(_ graph: Graph, layers: [Int], input: Tensor) throws -> [Tensor] {
        guard let inputName = graph.inputs.first?.name else { throw CNXError("the graph has no input") }
        var g = graph
        let names = layers.map { graph.nodes[$0].outputs[0] }
        g.outputs += names.map { ValueInfo(name: $0, dtype: .float32, shape: nil) }
        let values = try ReferenceExecutor(graph: g).run([inputName: input])
        return try names.map { name in
            guard let t = values[name] else { throw CNXError("layer output '\(name)' was not computed") }
            return t
        }
    }

    /// - Parameters:
    ///   - model: the model's graph, optimised (fused).
    ///   - reference: the reference's graph, optimised the same way.
    ///   - input: a float32 batch both take.
    /// - Throws: `CNXError` when the graphs do not have the same layers.
    public static func compare(model: Graph, reference: Graph, input: Tensor) throws -> [LayerComparison] {
        let ml = layers(model), rl = layers(reference)
        guard !rl.isEmpty else {
            throw CNXError("the reference has no fused ConvNeXt layers (stem, blocks, downsamples, head) to compare")
        }
        guard ml.count == rl.count else {
            throw CNXError("cannot align the layers: the model has \(ml.count) fused layers, the reference \(rl.count)")
        }
        let mOut = try capture(model, layers: ml, input: input)
        let rOut = try capture(reference, layers: rl, input: input)
        let names = self.names(reference)
        // Which compared layer writes each value of the model's graph.
        var writer: [String: Int] = [:]
        for (j, i) in ml.enumerated() { writer[model.nodes[i].outputs[0]] = j }
        let inputName = model.inputs.first?.name
        var result: [LayerComparison] = []
        for j in 0..<ml.count {
            let a = mOut[j], b = rOut[j]
            guard a.shape == b.shape else {
                throw CNXError("layer \(j) (\(names[j])): the model's output has shape \(a.shape), the reference's \(b.shape)")
            }
            let (s, diff, cos) = compareTensors(a, b)
            // The layer alone: its activation inputs replaced by the reference's.
            let node = model.nodes[ml[j]]
            var args: [Tensor?] = []
            var matched = true
            for name in node.inputs {
                if name.isEmpty {
                    args.append(nil)
                } else if let w = model.initializers[name] {
                    args.append(w)
                } else if name == inputName {
                    args.append(input)
                } else if let k = writer[name] {
                    args.append(rOut[k])
                } else {
                    matched = false
                    break
                }
            }
            var local: Double?
            if matched, let out = try ReferenceExecutor.evaluate(node, args).first, out.shape == b.shape {
                local = compareTensors(out, b).sqnr
            }
            result.append(LayerComparison(name: names[j], shape: b.shape, sqnrDB: s, localSQNRDB: local, maxAbsDiff: diff, cosine: cos))
        }
        return result
    }

    static func compareTensors(_ a: Tensor, _ b: Tensor) -> (sqnr: Double, maxAbsDiff: Float, cosine: Double) {
        a.withUnsafeFloats { x in
            b.withUnsafeFloats { y in
                var signal = 0.0, noise = 0.0
                var diff: Float = 0
                for i in 0..<x.count {
                    let d = x[i] - y[i]
                    signal += Double(y[i]) * Double(y[i])
                    noise += Double(d) * Double(d)
                    if abs(d) > diff || abs(d).isNaN { diff = abs(d) }
                }
                return (sqnr(signal: signal, noise: noise), diff, cosineSimilarity(x, y))
            }
        }
    }
}
