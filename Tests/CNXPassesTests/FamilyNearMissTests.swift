import CNXGraph
import CNXPasses
import CNXReference
import CNXRuntime
import XCTest

/// The passes added for the model families, on hand-built graphs: each folds the spelling it
/// is for (and the folded graph computes the same), and leaves near-misses alone.
final class FamilyNearMissTests: XCTestCase {
    /// Values in [-1, 1) from a fixed-seed generator.
    func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed
        let values = (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        return Tensor(floats: values, shape: shape)
    }

    /// Runs `pass` on `graph`: returns the rewrite count, and checks the verifier and that the
    /// result computes what the original did on a random input.
    @discardableResult
    func apply(_ pass: any Pass, _ graph: Graph, inputShape: [Int], file: StaticString = #filePath, line: UInt = #line) throws -> (
        Int, Graph
    ) {
        var g = graph
        let n = try pass.run(&g)
        try Verifier.verify(g)
        let x = random(inputShape, seed: 11)
        var inputs = ["x": x]
        for extra in graph.inputs.dropFirst() { inputs[extra.name] = random(extra.shape?.compactMap(\.value) ?? [], seed: 3) }
        let a = try ReferenceExecutor(graph: graph).run(inputs)["y"]!, b = try ReferenceExecutor(graph: g).run(inputs)["y"]!
        XCTAssertEqual(a.shape, b.shape, file: file, line: line)
        var diff: Float = 0, scale: Float = 0
        for (p, q) in zip(a.floats, b.floats) { diff = max(diff, abs(p - q)); scale = max(scale, abs(p)) }
        XCTAssertLessThanOrEqual(diff, 2e-6 * max(scale, 1), file: file, line: line)
        return (n, g)
    }

    func graph(_ nodes: [Node], _ tensors: [String: Tensor], shape: [Int], extraInputs: [ValueInfo] = []) -> Graph {
        Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: shape.map { .fixed($0) })] + extraInputs,
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], nodes: nodes, initializers: tensors)
    }

    // MARK: RMS and simple norms

    /// timm's rms_norm2d (axis 1) or RmsNorm (last axis): x * (1 / sqrt(mean(x²) + eps)) * gamma.
    func rmsChain(shape: [Int], axis: Int, exponent: Float = 2, epsInput: Bool = false, squareReadTwice: Bool = false) -> Graph {
        let c = shape[axis]
        var gammaShape = [Int](repeating: 1, count: shape.count - axis)
        gammaShape[0] = c
        var nodes = [
            Node(name: "pow", op: .pow, inputs: ["x", "two"], outputs: ["p"]),
            Node(name: "mean", op: .reduceMean, inputs: ["p"], outputs: ["m"], attributes: ["axes": .ints([axis]), "keepdims": .int(1)]),
            Node(name: "add", op: .add, inputs: ["m", epsInput ? "e" : "eps"], outputs: ["a"]),
            Node(name: "sqrt", op: .sqrt, inputs: ["a"], outputs: ["s"]),
            Node(name: "inv", op: .div, inputs: ["one", "s"], outputs: ["r"]),
            Node(name: "scale", op: .mul, inputs: ["x", "r"], outputs: ["n"]),
            Node(name: "gamma", op: .mul, inputs: ["n", "g"], outputs: [squareReadTwice ? "y0" : "y"]),
        ]
        if squareReadTwice { nodes.append(Node(name: "leak", op: .add, inputs: ["y0", "p"], outputs: ["y"])) }
        return graph(
            nodes,
            [
                "two": Tensor(floats: [exponent], shape: []), "eps": Tensor(floats: [1e-6], shape: []),
                "one": Tensor(floats: [1], shape: []),
                "g": Tensor(floats: (0..<c).map { 0.5 + Float($0) / Float(c) }, shape: axis == shape.count - 1 ? [c] : [1] + gammaShape),
            ],
            shape: shape, extraInputs: epsInput ? [ValueInfo(name: "e", dtype: .float32, shape: [])] : [])
    }

    func testRMSNormFoldsOverTheLastAxisAndOverChannels() throws {
        let (n1, last) = try apply(FoldRMSNorm(), rmsChain(shape: [2, 3, 4, 6], axis: 3), inputShape: [2, 3, 4, 6])
        XCTAssertEqual(n1, 1)
        XCTAssertEqual(last.nodes.map(\.op), [.rmsNormalization])
        let (n2, first) = try apply(FoldRMSNorm(), rmsChain(shape: [2, 6, 4, 3], axis: 1), inputShape: [2, 6, 4, 3])
        XCTAssertEqual(n2, 1)
        XCTAssertEqual(first.nodes.map(\.op), [.transpose, .rmsNormalization, .transpose])
    }

    func testRMSNormNearMissesAreLeftAlone() throws {
        let cases: [(String, Graph, [Int])] = [
            ("another axis", rmsChain(shape: [2, 3, 4, 6], axis: 2), [2, 3, 4, 6]),
            ("epsilon not a constant", rmsChain(shape: [2, 3, 4, 6], axis: 3, epsInput: true), [2, 3, 4, 6]),
            ("cube, not square", rmsChain(shape: [2, 3, 4, 6], axis: 3, exponent: 3), [2, 3, 4, 6]),
            ("square read twice", rmsChain(shape: [2, 3, 4, 6], axis: 3, squareReadTwice: true), [2, 3, 4, 6]),
        ]
        for (label, g, shape) in cases {
            let (n, after) = try apply(FoldRMSNorm(), g, inputShape: shape)
            XCTAssertEqual(n, 0, label)
            XCTAssertEqual(after.nodes.map(\.op), g.nodes.map(\.op), label)
        }
    }

    /// timm's simple_norm as the legacy exporter writes it (after constant folding): the
    /// unbiased variance as mean((x - mean x)²) * C / (C - 1).
    func simpleChain(c: Int, factor: (Float, Float), centreAxis: Int = 3) -> Graph {
        graph(
            [
                Node(
                    name: "mean", op: .reduceMean, inputs: ["x"], outputs: ["mu"],
                    attributes: ["axes": .ints([centreAxis]), "keepdims": .int(1)]),
                Node(name: "sub", op: .sub, inputs: ["x", "mu"], outputs: ["d"]),
                Node(name: "sq", op: .mul, inputs: ["d", "d"], outputs: ["d2"]),
                Node(
                    name: "var", op: .reduceMean, inputs: ["d2"], outputs: ["v0"], attributes: ["axes": .ints([-1]), "keepdims": .int(1)]),
                Node(name: "times", op: .mul, inputs: ["v0", "c"], outputs: ["v1"]),
                Node(name: "over", op: .div, inputs: ["v1", "c1"], outputs: ["v"]),
                Node(name: "add", op: .add, inputs: ["v", "eps"], outputs: ["a"]),
                Node(name: "sqrt", op: .sqrt, inputs: ["a"], outputs: ["s"]),
                Node(name: "inv", op: .reciprocal, inputs: ["s"], outputs: ["r"]),
                Node(name: "scale", op: .mul, inputs: ["x", "r"], outputs: ["n"]),
                Node(name: "gamma", op: .mul, inputs: ["n", "g"], outputs: ["y"]),
            ],
            [
                "c": Tensor(floats: [factor.0], shape: []), "c1": Tensor(floats: [factor.1], shape: []),
                "eps": Tensor(floats: [1e-6], shape: []),
                "g": Tensor(floats: (0..<c).map { 1.5 - Float($0) / Float(c) }, shape: [c]),
            ], shape: [2, 3, 4, c])
    }

    func testSimpleNormFoldsAndKeepsItsUnbiasedVariance() throws {
        let (n, g) = try apply(FoldRMSNorm(), simpleChain(c: 8, factor: (8, 7)), inputShape: [2, 3, 4, 8])
        XCTAssertEqual(n, 1)
        XCTAssertEqual(g.nodes.map(\.op), [.simpleNorm])
        // C / (C - 1) is the op's own variance: epsilon and gamma stay as they were.
        XCTAssertEqual(g.nodes[0].float("epsilon"), 1e-6)
        // Another factor folds into epsilon and gamma, exactly (apply checks the values).
        let (m, h) = try apply(FoldRMSNorm(), simpleChain(c: 8, factor: (1, 1)), inputShape: [2, 3, 4, 8])
        XCTAssertEqual(m, 1)
        XCTAssertNotEqual(h.nodes[0].float("epsilon"), 1e-6)
        // Centred over another axis than the variance: not a SimpleNorm.
        let near = simpleChain(c: 8, factor: (8, 7), centreAxis: 2)
        let (k, kept) = try apply(FoldRMSNorm(), near, inputShape: [2, 3, 4, 8])
        XCTAssertEqual(k, 0)
        XCTAssertEqual(kept.nodes.count, near.nodes.count)
    }

    // MARK: SiLU

    func testSiLUFoldsOnlyWhenTheSigmoidReadsTheSameValue() throws {
        let silu = graph(
            [
                Node(name: "sig", op: .sigmoid, inputs: ["x"], outputs: ["s"]),
                Node(name: "mul", op: .mul, inputs: ["s", "x"], outputs: ["y"]),
            ], [:], shape: [2, 5])
        let (n, g) = try apply(FoldSiLU(), silu, inputShape: [2, 5])
        XCTAssertEqual(n, 1)
        XCTAssertEqual(g.nodes.map(\.op), [.swish])
        let gated = graph(
            [
                Node(name: "neg", op: .neg, inputs: ["x"], outputs: ["z"]),
                Node(name: "sig", op: .sigmoid, inputs: ["z"], outputs: ["s"]),
                Node(name: "mul", op: .mul, inputs: ["s", "x"], outputs: ["y"]),
            ], [:], shape: [2, 5])
        XCTAssertEqual(try apply(FoldSiLU(), gated, inputShape: [2, 5]).0, 0)
        let shared = graph(
            [
                Node(name: "sig", op: .sigmoid, inputs: ["x"], outputs: ["s"]),
                Node(name: "mul", op: .mul, inputs: ["s", "x"], outputs: ["m"]),
                Node(name: "add", op: .add, inputs: ["m", "s"], outputs: ["y"]),
            ], [:], shape: [2, 5])
        XCTAssertEqual(try apply(FoldSiLU(), shared, inputShape: [2, 5]).0, 0)
    }

    // MARK: GRN

    /// ConvNeXt V2's GRN written out over an NCHW map (timm's conv_mlp models): spatial axes
    /// `spatial`, channel axis 1; `residual` false drops the `+ x`.
    func grnChain(spatial: [Int] = [2, 3], residual: Bool = true, gamma: Float = 0.7, beta: Float = 0.2) -> Graph {
        let c = 6
        var nodes = [
            Node(name: "l2", op: .reduceL2, inputs: ["x"], outputs: ["gx"], attributes: ["axes": .ints(spatial), "keepdims": .int(1)]),
            Node(name: "mean", op: .reduceMean, inputs: ["gx"], outputs: ["mg"], attributes: ["axes": .ints([1]), "keepdims": .int(1)]),
            Node(name: "eps", op: .add, inputs: ["mg", "e"], outputs: ["den"]),
            Node(name: "div", op: .div, inputs: ["gx", "den"], outputs: ["nx"]),
            Node(name: "xn", op: .mul, inputs: ["x", "nx"], outputs: ["t"]),
            Node(name: "gamma", op: .mul, inputs: ["g", "t"], outputs: ["u"]),
            Node(name: "beta", op: .add, inputs: ["u", "b"], outputs: [residual ? "v" : "y"]),
        ]
        if residual { nodes.append(Node(name: "res", op: .add, inputs: ["x", "v"], outputs: ["y"])) }
        return graph(
            nodes,
            [
                "e": Tensor(floats: [1e-6], shape: []),
                "g": Tensor(floats: (0..<c).map { gamma * Float($0 + 1) / Float(c) }, shape: [1, c, 1, 1]),
                "b": Tensor(floats: (0..<c).map { beta * Float($0) }, shape: [1, c, 1, 1]),
            ], shape: [2, c, 3, 4])
    }

    func testChannelsFirstGRNFoldsAndNearMissesStay() throws {
        let (n, g) = try apply(FoldGRN(), grnChain(), inputShape: [2, 6, 3, 4])
        XCTAssertEqual(n, 1)
        XCTAssertEqual(g.nodes.map(\.op), [.transpose, .grn, .transpose])
        for (label, near) in [("H and C, not H and W", grnChain(spatial: [1, 3])), ("no residual", grnChain(residual: false))] {
            let (k, kept) = try apply(FoldGRN(), near, inputShape: [2, 6, 3, 4])
            XCTAssertEqual(k, 0, label)
            XCTAssertEqual(kept.nodes.count, near.nodes.count, label)
        }
    }

    func testOnlyAGRNWithZeroGammaAndBetaGoes() throws {
        var (_, zero) = try apply(FoldGRN(), grnChain(gamma: 0, beta: 0), inputShape: [2, 6, 3, 4])
        XCTAssertEqual(try DropIdentityGRN().run(&zero), 1)
        XCTAssertFalse(zero.nodes.contains { $0.op == .grn })
        try Verifier.verify(zero)
        let x = random([2, 6, 3, 4], seed: 5)
        XCTAssertEqual(try ReferenceExecutor(graph: zero).run(["x": x])["y"]!.floats, x.floats)
        var (_, shifted) = try apply(FoldGRN(), grnChain(gamma: 0, beta: 0.2), inputShape: [2, 6, 3, 4])
        XCTAssertEqual(try DropIdentityGRN().run(&shifted), 0)
        XCTAssertTrue(shifted.nodes.contains { $0.op == .grn })
    }

    // MARK: Stem

    /// A 3x3 stride-2 convolution with padding 1 of `source`, the first half of an overlapping stem.
    func stemConv(readsImage: Bool) -> Graph {
        var nodes = [
            Node(
                name: "conv", op: .conv, inputs: [readsImage ? "x" : "r", "w", "bias"], outputs: ["y"],
                attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        ]
        if !readsImage { nodes.insert(Node(name: "relu", op: .relu, inputs: ["x"], outputs: ["r"]), at: 0) }
        return graph(nodes, ["w": random([4, 3, 3, 3], seed: 9), "bias": random([4], seed: 10)], shape: [1, 3, 8, 8])
    }

    func testAConvolutionOfTheImageIsAStemAndOthersAreNot() throws {
        let (n, g) = try apply(FuseStem(), stemConv(readsImage: true), inputShape: [1, 3, 8, 8])
        XCTAssertEqual(n, 1)
        XCTAssertEqual(g.nodes.map(\.op), [.stem, .transpose])
        XCTAssertEqual(g.nodes[0].string("norm"), "none")
        XCTAssertEqual(g.nodes[0].int("stride"), 2)
        XCTAssertEqual(g.nodes[0].int("pad"), 1)
        let (k, _) = try apply(FuseStem(), stemConv(readsImage: false), inputShape: [1, 3, 8, 8])
        XCTAssertEqual(k, 0)
    }

    // MARK: Head

    /// Pool, LayerNorm over channels, Linear, then `act` and a second Linear (an MLP head).
    func headGraph(act: OpType) -> Graph {
        graph(
            [
                Node(
                    name: "pool", op: .reduceMean, inputs: ["x"], outputs: ["p"], attributes: ["axes": .ints([2, 3]), "keepdims": .int(0)]),
                Node(name: "ln", op: .layerNormalization, inputs: ["p", "s", "b"], outputs: ["n"], attributes: ["epsilon": .float(1e-6)]),
                Node(name: "fc1", op: .linear, inputs: ["n", "w1", "b1"], outputs: ["h"]),
                Node(
                    name: "act", op: act, inputs: ["h"], outputs: ["a"], attributes: act == .gelu ? ["approximate": .string("none")] : [:]),
                Node(name: "fc2", op: .linear, inputs: ["a", "w2", "b2"], outputs: ["y"]),
            ],
            [
                "s": random([6], seed: 1), "b": random([6], seed: 2), "w1": random([6, 5], seed: 3), "b1": random([5], seed: 4),
                "w2": random([5, 4], seed: 5), "b2": random([4], seed: 6),
            ], shape: [2, 6, 3, 3])
    }

    func testMLPHeadFusesWithItsActivationAndAnotherActivationEndsTheHead() throws {
        let (n, g) = try apply(FuseHead(), headGraph(act: .gelu), inputShape: [2, 6, 3, 3])
        XCTAssertEqual(n, 1)
        XCTAssertEqual(g.nodes.map(\.op), [.transpose, .head])
        XCTAssertEqual(g.nodes[1].string("activation"), "gelu")
        // Relu is no activation the fused ops carry: the head stops at the first Linear.
        let (k, h) = try apply(FuseHead(), headGraph(act: .relu), inputShape: [2, 6, 3, 3])
        XCTAssertEqual(k, 1)
        XCTAssertEqual(h.nodes.map(\.op), [.transpose, .head, .relu, .linear])
        XCTAssertNil(h.nodes[1].string("activation"))
    }

    // MARK: Feature maps handed out (backbones)

    /// An NHWC map, a norm over `axis`, a transpose by `perm` into `y`.
    func outputNorm(_ op: OpType = .layerNormalization, axis: Int = -1, perm: [Int] = [0, 3, 1, 2], normAlsoOutput: Bool = false) -> Graph {
        var g = graph(
            [
                Node(
                    name: "norm", op: op, inputs: ["x", "s"] + (op == .layerNormalization ? ["b"] : []), outputs: ["n"],
                    attributes: ["axis": .int(axis), "epsilon": .float(1e-6)]),
                Node(name: "t", op: .transpose, inputs: ["n"], outputs: ["y"], attributes: ["perm": .ints(perm)]),
            ], ["s": random([5], seed: 1), "b": random([5], seed: 2)], shape: [2, 3, 4, 5])
        if normAlsoOutput { g.outputs.append(ValueInfo(name: "n", dtype: .float32, shape: nil)) }
        return g
    }

    func testOutputNormAndTransposeToNCHWFuseIntoFeatures() throws {
        for op in [OpType.layerNormalization, .rmsNormalization] {
            let (n, g) = try apply(FuseFeatures(), outputNorm(op), inputShape: [2, 3, 4, 5])
            XCTAssertEqual(n, 1)
            XCTAssertEqual(g.nodes.map(\.op), [.features])
            XCTAssertEqual(g.nodes[0].string("norm"), op == .layerNormalization ? "layer" : "rms")
            XCTAssertEqual(g.nodes[0].float("epsilon"), 1e-6)
        }
        // Near-misses: another permutation, a norm over another axis, a norm whose output is
        // also handed out, a transpose of the graph's input (not a fused map).
        XCTAssertEqual(try apply(FuseFeatures(), outputNorm(perm: [0, 3, 2, 1]), inputShape: [2, 3, 4, 5]).0, 0)
        var other = outputNorm(axis: 2)
        other.initializers["s"] = random([4, 5], seed: 4)
        other.initializers["b"] = random([4, 5], seed: 5)
        XCTAssertEqual(try apply(FuseFeatures(), other, inputShape: [2, 3, 4, 5]).0, 0)
        XCTAssertEqual(try apply(FuseFeatures(), outputNorm(normAlsoOutput: true), inputShape: [2, 3, 4, 5]).0, 0)
        let bare = graph(
            [Node(name: "t", op: .transpose, inputs: ["x"], outputs: ["y"], attributes: ["perm": .ints([0, 3, 1, 2])])], [:],
            shape: [2, 3, 4, 5])
        XCTAssertEqual(try apply(FuseFeatures(), bare, inputShape: [2, 3, 4, 5]).0, 0)
    }
}
