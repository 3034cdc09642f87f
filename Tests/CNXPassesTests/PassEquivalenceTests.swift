import CNXGraph
import CNXImport
import CNXPasses
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// Each pass on its own: the graph before it and after it, run on the same inputs, agree; the
/// verifier accepts the result; and every pass rewrites something on some fixture.
final class PassEquivalenceTests: XCTestCase {
    func testEveryPassPreservesEveryFixture() throws {
        let passes = Pipeline.standard.passes
        var rewritesPerPass = [Int](repeating: 0, count: passes.count)
        for entry in try Fixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.model)
            var previous = try outputs(of: graph, entry)
            for (k, pass) in passes.enumerated() {
                let n = try pass.run(&graph)
                rewritesPerPass[k] += n
                XCTAssertNoThrow(try Verifier.verify(graph), "\(entry.name) after \(pass.name)")
                let now = try outputs(of: graph, entry)
                for (a, b) in zip(now, previous) {
                    XCTAssertEqual(a.shape, b.shape, "\(entry.name) \(pass.name)")
                    XCTAssertLessThanOrEqual(relativeError(a.floats, b.floats), 1e-5, "\(entry.name): \(pass.name) changed the result")
                }
                previous = now
            }
        }
        // These passes have their coverage in FamilyTests: no model here has an RMS or simple
        // norm, a SiLU or a zero GRN; fuse-features is for backbones (BackboneTests,
        // TransformersBackboneTests), and these are classifiers.
        let familyOnly: Set = ["fold-rmsnorm", "fold-silu", "drop-identity-grn", "fuse-features"]
        for (k, pass) in passes.enumerated() where !familyOnly.contains(pass.name) {
            XCTAssertGreaterThan(rewritesPerPass[k], 0, "\(pass.name) never matched any fixture")
        }
    }

    /// The fully optimised graph of every ConvNeXt fixture, from either exporter, is nothing
    /// but fused operations: every permute cancelled, every block fused (the isotropic model's
    /// stem, which has no norm, too).
    func testExportsFuseCompletely() throws {
        for entry in try Fixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.model)
            _ = try Pipeline.standard.run(&graph)
            XCTAssertTrue(graph.nodes.allSatisfy { $0.op.isFused }, "\(entry.name): \(graph.opHistogram)")
            XCTAssertEqual(graph.nodes.filter { $0.op == .block }.count, entry.depths.reduce(0, +), entry.name)
        }
    }
}

/// Hand-built graphs that almost match a pattern: each must come out of its pass unchanged.
final class NearMissTests: XCTestCase {
    func gatherGraph(_ indices: [Int64]) -> Graph {
        Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(6)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [Node(name: "g", op: .gather, inputs: ["x", "idx"], outputs: ["y"], attributes: ["axis": .int(0)])],
            initializers: ["idx": Tensor(int64s: indices, shape: [2, 3])])
    }

    func testGatherInRowMajorOrderIsAReshapeAndOtherOrdersStay() throws {
        var graph = gatherGraph([0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try SimplifyGather().run(&graph), 1)
        XCTAssertEqual(graph.nodes.map(\.op), [.reshape])
        let x = random([6], seed: 5)
        let a = try ReferenceExecutor(graph: gatherGraph([0, 1, 2, 3, 4, 5])).run(["x": x])["y"]!
        let b = try ReferenceExecutor(graph: graph).run(["x": x])["y"]!
        XCTAssertEqual(a.floats, b.floats)
        XCTAssertEqual(b.shape, [2, 3])
        for near in [[0, 2, 4, 1, 3, 5], [1, 2, 3, 4, 5, 0], [0, 1, 2, 3, 4, 4]] as [[Int64]] {
            var g = gatherGraph(near)
            XCTAssertEqual(try SimplifyGather().run(&g), 0, "\(near)")
            XCTAssertEqual(g.nodes.map(\.op), [.gather])
        }
    }

    /// A decomposed LayerNorm over `axis` of an input [2, 3, 4, 5], optionally broken.
    func layerNormChain(axis: Int, epsAsInput: Bool = false, affine: Bool = true, extraReaderOfD: Bool = false) -> Graph {
        let dims = [2, 3, 4, 5]
        let c = dims[axis]
        var affineShape = [Int](repeating: 1, count: 4 - axis)
        affineShape[0] = c
        var nodes = [
            Node(name: "mean", op: .reduceMean, inputs: ["x"], outputs: ["m"], attributes: ["axes": .ints([axis]), "keepdims": .int(1)]),
            Node(name: "sub", op: .sub, inputs: ["x", "m"], outputs: ["d"]),
            Node(name: "pow", op: .pow, inputs: ["d", "two"], outputs: ["p"]),
            Node(name: "var", op: .reduceMean, inputs: ["p"], outputs: ["v"], attributes: ["axes": .ints([axis]), "keepdims": .int(1)]),
            Node(name: "add_eps", op: .add, inputs: ["v", epsAsInput ? "e" : "eps"], outputs: ["ve"]),
            Node(name: "sqrt", op: .sqrt, inputs: ["ve"], outputs: ["s"]),
            Node(name: "div", op: .div, inputs: ["d", "s"], outputs: affine ? ["n"] : ["y"]),
        ]
        if affine {
            nodes += [
                Node(name: "scale", op: .mul, inputs: ["n", "gamma"], outputs: ["a"]),
                Node(name: "shift", op: .add, inputs: ["a", "beta"], outputs: extraReaderOfD ? ["y0"] : ["y"]),
            ]
        }
        if extraReaderOfD { nodes.append(Node(name: "leak", op: .add, inputs: ["y0", "d"], outputs: ["y"])) }
        var inputs = [ValueInfo(name: "x", dtype: .float32, shape: dims.map { .fixed($0) })]
        if epsAsInput { inputs.append(ValueInfo(name: "e", dtype: .float32, shape: [])) }
        return Graph(
            inputs: inputs, outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)], nodes: nodes,
            initializers: [
                "two": Tensor(floats: [2], shape: []), "eps": Tensor(floats: [1e-6], shape: []),
                "gamma": Tensor(floats: (0..<c).map { 0.5 + Float($0) }, shape: affine ? (axis == 3 ? [c] : affineShape) : [c]),
                "beta": Tensor(floats: (0..<c).map { Float($0) - 1 }, shape: axis == 3 ? [c] : affineShape),
            ])
    }

    func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed
        let values = (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000
        }
        return Tensor(floats: values, shape: shape)
    }

    func testLayerNormFoldsOnTheLastAxisAndOnAxisOne() throws {
        for axis in [3, 1] {
            let original = layerNormChain(axis: axis)
            var graph = original
            XCTAssertEqual(try FoldLayerNorm().run(&graph), 1, "axis \(axis)")
            XCTAssertTrue(graph.nodes.contains { $0.op == .layerNormalization })
            let x = random([2, 3, 4, 5], seed: 7)
            let a = try ReferenceExecutor(graph: original).run(["x": x])["y"]!
            let b = try ReferenceExecutor(graph: graph).run(["x": x])["y"]!
            XCTAssertLessThanOrEqual(relativeError(b.floats, a.floats), 1e-5)
        }
    }

    func testLayerNormNearMissesAreLeftAlone() throws {
        let cases: [(String, Graph)] = [
            ("another axis", layerNormChain(axis: 2)),
            ("epsilon not a constant", layerNormChain(axis: 3, epsAsInput: true)),
            ("missing affine", layerNormChain(axis: 3, affine: false)),
            ("intermediate used twice", layerNormChain(axis: 3, extraReaderOfD: true)),
        ]
        for (label, original) in cases {
            var graph = original
            XCTAssertEqual(try FoldLayerNorm().run(&graph), 0, label)
            XCTAssertEqual(graph.nodes.map(\.op), original.nodes.map(\.op), label)
        }
    }

    func geluChain(divisor: Float, half: Float = 0.5) -> Graph {
        Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.fixed(4), .fixed(8)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [
                Node(name: "div", op: .div, inputs: ["x", "k"], outputs: ["u"]),
                Node(name: "erf", op: .erf, inputs: ["u"], outputs: ["e"]),
                Node(name: "plus", op: .add, inputs: ["e", "one"], outputs: ["a"]),
                Node(name: "mul", op: .mul, inputs: ["x", "a"], outputs: ["m"]),
                Node(name: "half", op: .mul, inputs: ["m", "h"], outputs: ["y"]),
            ],
            initializers: [
                "k": Tensor(floats: [divisor], shape: []), "one": Tensor(floats: [1], shape: []), "h": Tensor(floats: [half], shape: []),
            ])
    }

    func testGeluFoldsAndNearMissesStay() throws {
        let original = geluChain(divisor: 1.4142135)
        var graph = original
        XCTAssertEqual(try FoldGelu().run(&graph), 1)
        XCTAssertEqual(graph.nodes.map(\.op), [.gelu])
        let x = random([4, 8], seed: 3)
        let a = try ReferenceExecutor(graph: original).run(["x": x])["y"]!
        let b = try ReferenceExecutor(graph: graph).run(["x": x])["y"]!
        XCTAssertLessThanOrEqual(relativeError(b.floats, a.floats), 1e-6)
        for (label, near) in [("another constant", geluChain(divisor: 1.5)), ("another factor", geluChain(divisor: 1.4142135, half: 0.25))]
        {
            var g = near
            XCTAssertEqual(try FoldGelu().run(&g), 0, label)
            XCTAssertEqual(g.nodes.count, 5, label)
        }
    }

    /// A block whose residual comes from somewhere else is not a ConvNeXt block.
    func testBlockWithAForeignResidualIsLeftAlone() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == "timm_linear_op17" })
        var graph = try ONNXReader.load(path: entry.model)
        for pass in Pipeline.standard.passes.prefix(while: { $0.name != "fuse-stem" }) { _ = try pass.run(&graph) }
        // Give the first block a residual from elsewhere: a Relu of its input.
        let add = try XCTUnwrap(graph.nodes.firstIndex { $0.op == .add })
        let original = graph.nodes[add]
        let detour = Node(name: "detour", op: .relu, inputs: [original.inputs[1]], outputs: ["detour_out"])
        graph.nodes[add].inputs[1] = "detour_out"
        graph.nodes.insert(detour, at: add)
        let blocksBefore = graph.nodes.filter { $0.op == .conv && $0.int("group") ?? 1 > 1 }.count
        XCTAssertEqual(try FuseBlocks().run(&graph), blocksBefore - 1)
        XCTAssertTrue(graph.nodes.contains { $0.name == "detour" })
    }
}
