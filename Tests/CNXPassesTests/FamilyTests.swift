import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// Every ConvNeXt family people download (Fixtures/families): after the standard pipeline only
/// the fused operations remain, and the fast runtime and the reference executor both give
/// PyTorch's answer.
final class FamilyTests: XCTestCase {
    static let fusedOps: Set<OpType> = [.stem, .downsample, .block, .head]

    func testEveryFamilyFusesCompletelyAndMatchesPyTorch() throws {
        let entries = try FamilyFixtures.manifest()
        XCTAssertGreaterThanOrEqual(entries.count, 30)
        for entry in entries {
            var graph = try ONNXReader.load(path: entry.onnx)
            let before = graph.nodes.count
            _ = try Pipeline.standard.run(&graph)
            let left = graph.nodes.filter { !Self.fusedOps.contains($0.op) }
            XCTAssertTrue(left.isEmpty, "\(entry.name): \(graph.opHistogram)")
            XCTAssertEqual(graph.nodes.filter { $0.op == .block }.count, entry.depths.reduce(0, +), entry.name)
            XCTAssertEqual(graph.nodes.filter { $0.op == .head }.count, 1, entry.name)
            let model = try Model(graph: graph, threads: 2)
            let reference = ReferenceExecutor(graph: graph)
            var worst: Float = 0
            for c in entry.cases {
                let x = try NPY.read(path: entry.path(c.input))
                let expected = try NPY.read(path: entry.path(c.expected))
                let cols = expected.shape.last ?? 1
                for (label, y) in [
                    ("runtime", try model.predict(x)),
                    ("reference", try XCTUnwrap(reference.run([graph.inputs[0].name: x])[graph.outputs[0].name])),
                ] {
                    XCTAssertEqual(y.shape, expected.shape, "\(entry.name) \(label)")
                    let err = relativeError(y.floats, expected.floats)
                    XCTAssertLessThanOrEqual(err, 1e-5, "\(entry.name) \(label) \(c.input): \(err) off PyTorch")
                    XCTAssertEqual(
                        argmaxRows(y.floats, cols: cols), argmaxRows(expected.floats, cols: cols), "\(entry.name) \(label) top-1")
                    if label == "runtime" { worst = max(worst, err) }
                }
            }
            print(
                String(
                    format: "family %@: %d -> %d nodes (%@), %.2e off PyTorch", entry.name, before, graph.nodes.count,
                    graph.opHistogram.map { "\($0.0.rawValue) \($0.1)" }.joined(separator: ", "), worst))
        }
    }

    /// Each pass on its own keeps every family's answer (the reference executor before and after).
    func testEveryPassPreservesEveryFamily() throws {
        let passes = Pipeline.standard.passes
        var rewrites = [Int](repeating: 0, count: passes.count)
        for entry in try FamilyFixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.onnx)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            var previous = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: x])[graph.outputs[0].name]!
            for (k, pass) in passes.enumerated() {
                rewrites[k] += try pass.run(&graph)
                XCTAssertNoThrow(try Verifier.verify(graph), "\(entry.name) after \(pass.name)")
                let now = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: x])[graph.outputs[0].name]!
                XCTAssertLessThanOrEqual(relativeError(now.floats, previous.floats), 1e-5, "\(entry.name): \(pass.name) changed the result")
                previous = now
            }
        }
        // fuse-features is for backbones (BackboneTests, TransformersBackboneTests); the families are classifiers.
        for (k, pass) in passes.enumerated() where pass.name != "fuse-features" {
            XCTAssertGreaterThan(rewrites[k], 0, "\(pass.name) never matched any family")
        }
    }

    /// The fused operations say what the family computes: activation, norm kind and epsilon.
    func testFusedOperationsCarryTheFamilysActivationAndNorm() throws {
        for entry in try FamilyFixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.onnx)
            _ = try Pipeline.standard.run(&graph)
            for block in graph.nodes where block.op == .block {
                XCTAssertEqual(block.string("activation") ?? "gelu", entry.activation, entry.name)
                XCTAssertEqual(block.string("norm") ?? "layer", entry.norm, entry.name)
                XCTAssertEqual(Double(block.float("epsilon") ?? 0), entry.eps, accuracy: entry.eps * 1e-4, entry.name)
                // A zero GRN is the identity and goes; a random one stays in the block.
                XCTAssertEqual(block.inputs.count > 7, entry.grn == "random", entry.name)
            }
            let stems = graph.nodes.filter { $0.op == .stem }
            XCTAssertEqual(stems.count, entry.stem == "patch" ? 1 : 2, entry.name)
            if entry.stem == "overlap_act" { XCTAssertEqual(stems.first?.string("activation") ?? "none", entry.activation, entry.name) }
            let head = try XCTUnwrap(graph.nodes.first { $0.op == .head }, entry.name)
            XCTAssertEqual(head.int("norm_first") == 1, entry.head.hasPrefix("norm-"), entry.name)
            XCTAssertEqual(head.string("norm") ?? "layer", entry.norm, entry.name)
            XCTAssertEqual(Double(head.float("epsilon") ?? 0), entry.head_eps, accuracy: entry.head_eps * 1e-4, entry.name)
            let layers = [1, 3].filter { $0 < head.inputs.count && !head.inputs[$0].isEmpty }.count
            XCTAssertEqual(layers, entry.head.components(separatedBy: "fc").count - 1, "\(entry.name) \(entry.head)")
        }
    }
}

/// A fused operation naming a norm or activation the runtime does not know is refused when the
/// model loads, with the node's name, rather than run as something else.
final class FusedAttributeRefusalTests: XCTestCase {
    func testUnknownActivationOrNormIsRefusedAtLoad() throws {
        let entry = try XCTUnwrap(try FamilyFixtures.manifest().first { $0.name == "test_convnext_op17" })
        var graph = try ONNXReader.load(path: entry.onnx)
        _ = try Pipeline.standard.run(&graph)
        XCTAssertNoThrow(try Model(graph: graph))
        let block = try XCTUnwrap(graph.nodes.firstIndex { $0.op == .block })
        for (key, value) in [("activation", "relu"), ("norm", "batch"), ("norm", "none")] {
            var bad = graph
            bad.nodes[block].attributes[key] = .string(value)
            XCTAssertThrowsError(try Model(graph: bad), "\(key) \(value)") { error in
                let message = (error as? CNXError)?.message ?? ""
                XCTAssertTrue(message.contains(bad.nodes[block].name) && message.contains(value), message)
            }
        }
    }
}
