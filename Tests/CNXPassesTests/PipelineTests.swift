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
            print("\(entry.name): \(before) -> \(graph.nodes.count) nodes; \(summary); ops \(graph.opHistogram.map { "\($0.0.rawValue) \($0.1)" }.joined(separator: ", "))")
        }
    }
}

final class DumpForDevelopment: XCTestCase {
    func testDump() throws {
        guard let name = ProcessInfo.processInfo.environment["CNX_DUMP"] else { return }
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
        var graph = try ONNXReader.load(path: entry.model)
        _ = try Pipeline.standard.run(&graph)
        print(graph.dump())
    }
}
