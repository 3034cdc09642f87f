import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXRuntime
import CNXTestSupport
import XCTest

/// A timm `features_only` backbone: four stage outputs, each intact through the passes and
/// the fast runtime.
final class BackboneTests: XCTestCase {
    var dir: URL { Fixtures.root.appendingPathComponent("Fixtures/backbone") }

    func expected(_ name: String) throws -> Tensor { try NPY.read(path: dir.appendingPathComponent("expected_\(name).npy").path) }

    func testEveryStageOutputMatchesONNXRuntimeAfterOptimisation() throws {
        var graph = try ONNXReader.load(path: dir.appendingPathComponent("backbone.onnx").path)
        XCTAssertEqual(graph.outputs.map(\.name), ["stage0", "stage1", "stage2", "stage3"])
        _ = try Pipeline.standard.run(&graph)
        XCTAssertEqual(graph.outputs.map(\.name), ["stage0", "stage1", "stage2", "stage3"])
        XCTAssertEqual(graph.nodes.filter { $0.op == .block }.count, 5, graph.dump())
        // Nothing on the reference kernels: each stage map leaves through a cnx.Features.
        XCTAssertTrue(graph.nodes.allSatisfy(\.op.isFused), "\(graph.opHistogram)")
        XCTAssertEqual(graph.nodes.filter { $0.op == .features }.map { $0.string("norm") }, ["none", "none", "none", "none"])
        let x = try NPY.read(path: dir.appendingPathComponent("input.npy").path)
        XCTAssertEqual(x.shape[0], 2)
        let outputs = try Model(graph: graph, threads: 2).predictAll([graph.inputs[0].name: x])
        for name in ["stage0", "stage1", "stage2", "stage3"] {
            let y = try XCTUnwrap(outputs[name]), e = try expected(name)
            XCTAssertEqual(y.shape, e.shape, name)
            XCTAssertLessThanOrEqual(relativeError(y.floats, e.floats), 1e-4, name)
        }
    }
}

/// `convnext-convert classifier.onnx out.cnx --features 0,1,2,3` gives the stage outputs of
/// the backbone exported from the same weights.
final class FeaturesFromClassifierTests: XCTestCase {
    func testFeaturesMatchTheBackboneExport() throws {
        let dir = Fixtures.root.appendingPathComponent("Fixtures/backbone")
        let tmp = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let cnx = tmp.appendingPathComponent("features.cnx").path
        let r = try runTool([dir.appendingPathComponent("classifier.onnx").path, cnx, "--features", "0,1,2,3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let model = try Model(path: cnx, threads: 2)
        XCTAssertEqual(model.outputNames, ["stage0", "stage1", "stage2", "stage3"])
        XCTAssertFalse(model.graph.nodes.contains { $0.op == .head }, "the head is dropped")
        let x = try NPY.read(path: dir.appendingPathComponent("input.npy").path)
        let outputs = try model.predictAll([model.inputName: x])
        for name in model.outputNames {
            let e = try NPY.read(path: dir.appendingPathComponent("expected_\(name).npy").path)
            let y = try XCTUnwrap(outputs[name])
            XCTAssertEqual(y.shape, e.shape, name)
            XCTAssertLessThanOrEqual(relativeError(y.floats, e.floats), 1e-4, name)
        }
        // A subset, and a stage that does not exist.
        let two = tmp.appendingPathComponent("two.cnx").path
        XCTAssertEqual(try runTool([dir.appendingPathComponent("classifier.onnx").path, two, "--features", "[1,3]"]).status, 0)
        XCTAssertEqual(try Model(path: two).outputNames, ["stage1", "stage3"])
        let bad = try runTool([
            dir.appendingPathComponent("classifier.onnx").path, tmp.appendingPathComponent("bad.cnx").path, "--features", "0,7",
        ])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("stage 7"), bad.stderr)
    }
}

/// The backbone through the command line: convert, run with `--output .npz`, int8.
final class BackboneCLITests: XCTestCase {
    let dir = Fixtures.root.appendingPathComponent("Fixtures/backbone")

    func testRunWritesEveryStageToNPZ() throws {
        let tmp = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let cnx = tmp.appendingPathComponent("backbone.cnx").path
        XCTAssertEqual(try runTool([dir.appendingPathComponent("backbone.onnx").path, cnx]).status, 0)
        let npz = tmp.appendingPathComponent("stages.npz").path
        let r = try runTool(["run", cnx, "--input", dir.appendingPathComponent("input.npy").path, "--output", npz])
        XCTAssertEqual(r.status, 0, r.stderr)
        let arrays = try NPZ.read(path: npz)
        XCTAssertEqual(arrays.map(\.name), ["stage0", "stage1", "stage2", "stage3"])
        for (name, y) in arrays {
            let e = try NPY.read(path: dir.appendingPathComponent("expected_\(name).npy").path)
            XCTAssertEqual(y.shape, e.shape, name)
            XCTAssertLessThanOrEqual(relativeError(y.floats, e.floats), 1e-4, name)
        }
        // One .npy cannot hold four outputs: a clear error, not the first output silently.
        let npy = try runTool([
            "run", cnx, "--input", dir.appendingPathComponent("input.npy").path, "--output", tmp.appendingPathComponent("x.npy").path,
        ])
        XCTAssertEqual(npy.status, 1)
        XCTAssertTrue(npy.stderr.contains(".npz"), npy.stderr)
    }

    func testInt8BackboneKeepsEveryStage() throws {
        let tmp = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Calibration: standard-normal samples like the test input, written as .npy.
        var state: UInt64 = 99
        let count = 16 * 3 * 64 * 64
        var values = [Float]()
        while values.count < count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u1 = (Double(state >> 11) + 0.5) / Double(1 << 53)
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u2 = (Double(state >> 11) + 0.5) / Double(1 << 53)
            values.append(Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)))
        }
        let calib = tmp.appendingPathComponent("calib.npy").path
        try NPY.write(Tensor(floats: values, shape: [16, 3, 64, 64]), path: calib)
        let cnx = tmp.appendingPathComponent("backbone.int8.cnx").path
        let q = try runTool(["quantize", "--int8", dir.appendingPathComponent("backbone.onnx").path, cnx, "--calibration", calib])
        XCTAssertEqual(q.status, 0, q.stderr)
        let model = try Model(path: cnx)
        XCTAssertTrue(model.graph.initializers.values.contains { $0.dtype == .int8 })
        let outputs = try model.predictAll([model.inputName: try NPY.read(path: dir.appendingPathComponent("input.npy").path)])
        for name in ["stage0", "stage1", "stage2", "stage3"] {
            let y = try XCTUnwrap(outputs[name]), e = try NPY.read(path: dir.appendingPathComponent("expected_\(name).npy").path)
            var signal = 0.0, noise = 0.0
            for (a, b) in zip(y.floats, e.floats) { signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b) }
            let sqnr = 10 * log10(signal / max(noise, 1e-30))
            print("backbone int8 \(name): SQNR \(String(format: "%.1f", sqnr)) dB")
            XCTAssertGreaterThanOrEqual(sqnr, 25, name)
        }
    }
}
