import CNXGraph
import CNXIO
import CNXImport
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// Every committed PyTorch export, run by the reference executor, against ONNX Runtime's outputs.
final class FixtureAgreementTests: XCTestCase {
    func testEveryFixtureMatchesONNXRuntime() throws {
        let entries = try Fixtures.manifest()
        XCTAssertGreaterThanOrEqual(entries.count, 10)
        for entry in entries {
            let graph = try ONNXReader.load(path: entry.model)
            let executor = ReferenceExecutor(graph: graph)
            for c in entry.cases {
                let x = try NPY.read(path: entry.path(c.input))
                let expected = try NPY.read(path: entry.path(c.expected))
                let result = try executor.run([graph.inputs[0].name: x])
                let y = try XCTUnwrap(result[graph.outputs[0].name])
                XCTAssertEqual(y.shape, expected.shape, "\(entry.name) \(c.input)")
                let err = relativeError(y.floats, expected.floats)
                XCTAssertLessThanOrEqual(err, 1e-4, "\(entry.name) \(c.input): relative error \(err)")
                let cols = expected.shape.last ?? 1
                XCTAssertEqual(argmaxRows(y.floats, cols: cols), argmaxRows(expected.floats, cols: cols), "\(entry.name) top-1")
            }
        }
    }

    /// The fixtures cover what the issue asks for: every source, both exporters, both dynamic forms.
    func testFixtureCoverage() throws {
        let entries = try Fixtures.manifest()
        let sources = Set(entries.map(\.source))
        for s in ["timm", "torchvision", "reference", "isotropic"] { XCTAssertTrue(sources.contains(s), s) }
        XCTAssertTrue(entries.contains { $0.exporter == "legacy" && $0.opset == 13 })
        XCTAssertTrue(entries.contains { $0.exporter == "legacy" && $0.opset == 17 })
        XCTAssertTrue(entries.contains { $0.exporter == "dynamo" })
        XCTAssertTrue(entries.contains { $0.dynamic_batch && $0.cases.count > 1 })
        XCTAssertTrue(entries.contains { $0.dynamic_hw && $0.cases.count > 1 })
    }

    /// A perturbed weight must break agreement: the comparison is able to fail.
    func testAgreementDetectsAWrongWeight() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.source == "timm" })
        var graph = try ONNXReader.load(path: entry.model)
        // Scale the layer-scale / second-MLP path of every block: the output must move.
        let name = try XCTUnwrap(graph.nodes.first { $0.op == .conv && (graph.initializers[$0.inputs[1]]?.shape[2] ?? 0) == 7 }?.inputs[1])
        let w = graph.initializers[name]!.copy()
        w.withUnsafeMutableFloats { for i in $0.indices { $0[i] *= 1.5 } }
        graph.initializers[name] = w
        let x = try NPY.read(path: entry.path(entry.cases[0].input))
        let expected = try NPY.read(path: entry.path(entry.cases[0].expected))
        let y = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: x])[graph.outputs[0].name]!
        XCTAssertGreaterThan(relativeError(y.floats, expected.floats), 1e-3)
    }
}
