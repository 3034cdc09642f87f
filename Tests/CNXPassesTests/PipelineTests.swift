import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// Runs `graph` on every case of `entry`, returning the outputs.
func outputs(of graph: Graph, _ entry: Fixtures.Entry) throws -> [Tensor] {
    let executor = ReferenceExecutor(graph: graph)
    return try entry.cases.map { c in
        let x = try NPY.read(path: entry.path(c.input))
        return try XCTUnwrap(executor.run([graph.inputs[0].name: x])[graph.outputs[0].name])
    }
}

final class PipelineTests: XCTestCase {
    /// The whole pipeline, on every fixture: the optimised graph computes what ONNX Runtime did.
    func testPipelineKeepsEveryFixtureExact() throws {
        for entry in try Fixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.model)
            let before = graph.nodes.count
            let steps = try Pipeline.standard.run(&graph)
            let results = try outputs(of: graph, entry)
            for (c, y) in zip(entry.cases, results) {
                let expected = try NPY.read(path: entry.path(c.expected))
                XCTAssertEqual(y.shape, expected.shape)
                XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, "\(entry.name) \(c.input)")
            }
            let summary = steps.filter { $0.rewrites > 0 }.map { "\($0.pass):\($0.rewrites)" }.joined(separator: " ")
            print(
                "\(entry.name): \(before) -> \(graph.nodes.count) nodes; \(summary); ops \(graph.opHistogram.map { "\($0.0.rawValue) \($0.1)" }.joined(separator: ", "))"
            )
        }
    }
}

/// `Graph.dump()`, what `--dump-after` prints (CNX_DUMP=fixture also prints it, for development).
final class GraphDumpTests: XCTestCase {
    /// `Graph.dump()` (what `--dump-after` prints) on a graph built by hand: every line, exactly.
    func testDumpListsInputsNodesWithConstantsAndAttributesThenOutputs() {
        let graph = Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: [.symbolic(name: "N", num: 1, den: 1), .fixed(3)])],
            outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [
                Node(name: "fc", op: .matMul, inputs: ["x", "w"], outputs: ["h"]),
                Node(
                    name: "act", op: .gelu, inputs: ["h"], outputs: ["y"],
                    attributes: [
                        "approximate": .string("tanh"), "axes": .ints([1, 2]), "alpha": .float(0.5),
                        "table": .floats(Array(repeating: 0, count: 9)),
                    ]),
            ],
            initializers: ["w": Tensor(floats: [1, 2, 3, 4, 5, 6], shape: [3, 2])])
        XCTAssertEqual(
            graph.dump().split(separator: "\n").map(String.init),
            [
                "input x: float32 [N, 3]",
                "h = MatMul(x, w<3x2>)  # fc",
                "y = Gelu(h) {alpha=0.5, approximate=\"tanh\", axes=[1, 2], table=[9 floats]}  # act",
                "output y",
            ])
    }

    /// The dump of an optimised fixture: one line per input, node (in order, with its operator,
    /// inputs and name) and output, constants shown with their shapes.
    func testDumpOfAnOptimisedGraphFollowsTheGraph() throws {
        let name = ProcessInfo.processInfo.environment["CNX_DUMP"] ?? "timm_linear_op17"
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
        var graph = try ONNXReader.load(path: entry.model)
        _ = try Pipeline.standard.run(&graph)
        let dump = graph.dump()
        if ProcessInfo.processInfo.environment["CNX_DUMP"] != nil { print(dump) }
        let lines = dump.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, graph.inputs.count + graph.nodes.count + graph.outputs.count)
        XCTAssertEqual(lines.first, "input \(graph.inputs[0].name): float32 \(describe(graph.inputs[0].shape ?? []))")
        XCTAssertEqual(lines.last, "output \(graph.outputs[0].name)")
        for (line, node) in zip(lines.dropFirst(graph.inputs.count), graph.nodes) {
            XCTAssertTrue(line.hasPrefix("\(node.outputs.joined(separator: ", ")) = \(node.op.rawValue)("), line)
            XCTAssertTrue(line.hasSuffix("  # \(node.name)"), line)
            for input in node.inputs {
                let shown = graph.initializers[input].map { "\(input)<\($0.shape.map(String.init).joined(separator: "x"))>" } ?? input
                XCTAssertTrue(line.contains(shown), "\(line) should show \(shown)")
            }
        }
        XCTAssertTrue(lines.contains { $0.contains("= cnx.Block(") }, "the blocks are fused")
    }
}
