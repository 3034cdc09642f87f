import CNXGraph
import Foundation

/// The optimisation pipeline: the passes in the order they run, each with why it is there.
public struct Pipeline {
    public var passes: [any Pass]

    public static let standard = Pipeline(passes: [
        FoldConstants(),  // shape chains and constant subgraphs become tensors, so patterns see constants
        SimplifyGather(),  // dynamo's index arithmetic over a flattened tensor becomes the Reshape it is
        SimplifyReshape(),  // reshapes in a row merge; reshapes to the same shape go
        FoldLayerNorm(),  // decomposed and channels-first LayerNorms become one op over the last axis
        FoldRMSNorm(),  // RMS and SimpleNorm chains (timm's _rms models) become one op over the last axis
        FoldGelu(),  // erf and tanh chains become Gelu
        FoldSiLU(),  // x * Sigmoid(x) becomes Swish, so SiLU models fuse like GELU ones
        FoldGRN(),  // ConvNeXt V2's GRN chain (channels-last or channels-first) becomes one op
        DropIdentityGRN(),  // a GRN with zero gamma and beta (V2 at initialisation) is the identity and goes
        FoldLinear(),  // MatMul+Add, Gemm, 1x1 Conv become Linear (channels-last)
        EliminateTransposes(),  // the permutes around norms and the MLP cancel; layer scale moves next to its Linear
        FoldLayerNormAffine(),  // the norm's gamma and beta go into the next Linear
        FoldLayerScale(),  // layer scale goes into the second pointwise layer
        FuseStem(),  // the convolutions reading the image (+ activation, + norm) -> ops that write channels-last
        FuseDownsample(),  // norm + 2x2 stride-2 Conv -> one channels-last op
        FuseBlocks(),  // depthwise, norm, MLP, activation, (GRN), residual -> one channels-last op
        FuseHead(),  // pool and norm (either order), Linear / MLP / nothing -> one op reading channels-last
        EliminateTransposes(),  // the permutes left between fused ops cancel
        FuseFeatures(),  // output norms and the transposes handing maps out NCHW -> cnx.Features
    ])

    public init(passes: [any Pass]) { self.passes = passes }

    /// The passes' names in order, each once (a pass that runs twice is named once): what
    /// `--dump-after` takes, for its help and its error message.
    public var passNames: [String] {
        var seen = Set<String>()
        return passes.map(\.name).filter { seen.insert($0).inserted }
    }

    /// What one pass did.
    public struct Step: Sendable {
        public let pass: String
        public let rewrites: Int
        public let nodesAfter: Int
        public let seconds: Double
    }

    /// Runs every pass, then the verifier; `after` sees the graph after each pass.
    public func run(_ graph: inout Graph, after: ((String, Graph) -> Void)? = nil) throws -> [Step] {
        var steps: [Step] = []
        for pass in passes {
            let start = Date()
            let n = try pass.run(&graph)
            do {
                try Verifier.verify(graph)
            } catch let e as CNXError {
                throw CNXError("after pass \(pass.name): the graph no longer verifies: \(e.message)")
            }
            steps.append(Step(pass: pass.name, rewrites: n, nodesAfter: graph.nodes.count, seconds: Date().timeIntervalSince(start)))
            after?(pass.name, graph)
        }
        return steps
    }
}
