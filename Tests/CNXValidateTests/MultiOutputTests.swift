import CNXGraph
import CNXIO
import CNXTestSupport
@testable import CNXValidate
import XCTest

/// `validate` on models with several outputs: the timm `features_only` backbone fixture, each of
/// its four stage outputs compared by name.
final class MultiOutputValidateTests: XCTestCase {
    let fixture = Fixtures.root.appendingPathComponent("Fixtures/backbone")
    let stages = ["stage0", "stage1", "stage2", "stage3"]
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { fixture.appendingPathComponent(name).path }

    /// backbone.onnx converted to a float32 .cnx.
    func converted() throws -> String {
        let out = dir.appendingPathComponent("backbone.cnx").path
        let r = try runTool([path("backbone.onnx"), out])
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    func validate(_ model: String, reference: String, _ extra: [String] = []) throws -> ToolResult {
        try runTool(["validate", model, "--reference", reference, "--data", path("input.npy")] + extra)
    }

    /// The `outputs` object of a JSON report, checked to hold exactly the four stages.
    func outputs(_ o: [String: Any], file: StaticString = #filePath, line: UInt = #line) throws -> [String: [String: Any]] {
        let outputs = try XCTUnwrap(o["outputs"] as? [String: [String: Any]], "\(o)", file: file, line: line)
        XCTAssertEqual(outputs.keys.sorted(), stages, file: file, line: line)
        return outputs
    }

    /// SQNR in dB from a JSON report (null: identical, infinite).
    func sqnr(_ entry: [String: Any]) throws -> Double {
        if entry["sqnr_db"] is NSNull { return .infinity }
        return try XCTUnwrap(entry["sqnr_db"] as? Double)
    }

    func testFloatBackboneEveryOutputMatchesItsSource() throws {
        let r = try validate(try converted(), reference: path("backbone.onnx"), ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.isEmpty, r.stderr)
        let o = try parseJSON(r.stdout)
        XCTAssertEqual(o["samples"] as? Int, 2)
        let outputs = try outputs(o)
        var sqnrs: [Double] = [], cosines: [Double] = []
        for name in stages {
            let e = try XCTUnwrap(outputs[name])
            let s = try sqnr(e)
            XCTAssertGreaterThan(s, 60, name)
            sqnrs.append(s)
            let c = try XCTUnwrap(e["mean_cosine"] as? Double)
            XCTAssertGreaterThan(c, 0.99999, name)
            cosines.append(c)
            XCTAssertLessThan(try XCTUnwrap(e["max_abs_diff"] as? Double), 1e-3, name)
        }
        XCTAssertEqual(outputs["stage0"]?["shape"] as? [Int], [8, 16, 16])
        XCTAssertEqual(outputs["stage3"]?["shape"] as? [Int], [32, 2, 2])
        // The top level holds the worst over the outputs.
        XCTAssertEqual(try sqnr(o), sqnrs.min())
        XCTAssertEqual(try XCTUnwrap(o["mean_cosine"] as? Double), cosines.min() ?? 0, accuracy: 1e-12)
        // No classification metrics, and a note saying so.
        for key in ["classes", "top1_agreement", "top5_overlap", "top1_accuracy", "within_budget"] { XCTAssertNil(o[key], key) }
        XCTAssertTrue((o["note"] as? String)?.contains("single-output") == true, "\(o)")

        // The table: one row per output, in the graph's order.
        let t = try validate(try converted(), reference: path("backbone.onnx"))
        XCTAssertEqual(t.status, 0, t.stderr)
        let rows = t.stdout.split(separator: "\n").filter { line in stages.contains { line.hasPrefix($0 + " ") } }
        XCTAssertEqual(rows.map { String($0.prefix(6)) }, stages, t.stdout)
        for text in ["4 outputs compared by name", "mean cosine", "SQNR", "largest |difference|", "worst:", "note:"] {
            XCTAssertTrue(t.stdout.contains(text), "'\(text)' not in\n\(t.stdout)")
        }
        XCTAssertFalse(t.stdout.contains("agreement:"), t.stdout)
    }

    func testInt8BackboneEveryOutputAbove25dB() throws {
        let calib = dir.appendingPathComponent("calib.npy").path
        try NPY.write(Tensor(floats: standardNormal(count: 16 * 3 * 64 * 64, seed: 7), shape: [16, 3, 64, 64]), path: calib)
        let int8 = dir.appendingPathComponent("backbone.int8.cnx").path
        let q = try runTool(["quantize", "--int8", path("backbone.onnx"), int8, "--calibration", calib])
        XCTAssertEqual(q.status, 0, q.stderr)
        for reference in [path("backbone.onnx"), try converted()] {
            let r = try validate(int8, reference: reference, ["--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let o = try parseJSON(r.stdout)
            let outputs = try outputs(o)
            for name in stages {
                let s = try sqnr(try XCTUnwrap(outputs[name]))
                print(
                    "validate int8 backbone \(name) against \(URL(fileURLWithPath: reference).lastPathComponent): SQNR \(String(format: "%.1f", s)) dB"
                )
                XCTAssertGreaterThanOrEqual(s, 25, name)
                XCTAssertLessThan(s, 100, "\(name): int8 should differ from float32")
            }
            XCTAssertGreaterThanOrEqual(try sqnr(o), 25)
        }
    }

    func testMismatchedOutputsAreRefused() throws {
        let backbone = try converted()
        for (model, reference) in [(backbone, path("classifier.onnx")), (path("classifier.onnx"), backbone)] {
            let r = try validate(model, reference: reference)
            XCTAssertEqual(r.status, 1, r.stdout)
            XCTAssertTrue(r.stdout.isEmpty, r.stdout)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            for text in ["stage0, stage1, stage2, stage3", "logits", "compared by name", model, reference] {
                XCTAssertTrue(r.stderr.contains(text), "'\(text)' not in \(r.stderr)")
            }
        }
    }

    func testMaxDropIsRefusedForSeveralOutputs() throws {
        let r = try validate(try converted(), reference: path("backbone.onnx"), ["--max-drop", "1"])
        XCTAssertEqual(r.status, 1, r.stdout)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("--max-drop") && r.stderr.contains("4 outputs"), r.stderr)
    }

    /// A graph fixing a batch of 2 gets 3 samples in pieces, every output cut back to 3; a
    /// single-output pair is still compared as logits.
    func testFixedBatchAndOutputMetricsInTheLibrary() throws {
        func predictor(batch: Dim, scale: Float) -> Predictor {
            let graph = Graph(
                inputs: [ValueInfo(name: "x", dtype: .float32, shape: [batch, .fixed(3), .fixed(1), .fixed(1)])],
                outputs: [ValueInfo(name: "a", dtype: .float32, shape: nil), ValueInfo(name: "b", dtype: .float32, shape: nil)],
                nodes: [], initializers: [:])
            return Predictor(path: "p\(scale)", runtime: "test", graph: graph) { x in
                let n = x.shape[0], v = x.floats
                return [
                    "a": Tensor(floats: v.map { $0 * scale }, shape: [n, 3]),
                    "b": Tensor(floats: (0..<n).map { v[3 * $0] + v[3 * $0 + 1] + v[3 * $0 + 2] }, shape: [n, 1, 1]),
                ]
            }
        }
        let data = dir.appendingPathComponent("x.npy").path
        try NPY.write(Tensor(floats: (1...9).map(Float.init), shape: [3, 3, 1, 1]), path: data)
        let fixed = predictor(batch: .fixed(2), scale: 2), dynamic = predictor(batch: .symbol("N"), scale: 1)
        let ys = try fixed.predictAll(try NPY.read(path: data))
        XCTAssertEqual(ys.map(\.shape), [[3, 3], [3, 1, 1]])
        XCTAssertEqual(ys[0].floats, (1...9).map { Float($0 * 2) })
        XCTAssertEqual(ys[1].floats, [6, 15, 24])
        let result = try Validation.run(model: fixed, reference: dynamic, data: try Dataset.npy(data), batch: 2, progress: false)
        let outputs = try XCTUnwrap(result.outputs)
        XCTAssertEqual(outputs.map(\.name), ["a", "b"])
        XCTAssertEqual(result.samples, 3)
        // a: twice the reference: noise equals signal, 0 dB; cosine 1. b: identical.
        XCTAssertEqual(outputs[0].sqnrDB, 0, accuracy: 1e-9)
        XCTAssertEqual(outputs[0].meanCosine, 1, accuracy: 1e-12)
        XCTAssertEqual(outputs[0].maxAbsDiff, 9)
        XCTAssertEqual(outputs[1].sqnrDB, .infinity)
        XCTAssertEqual(result.worstSQNRDB, 0, accuracy: 1e-9)
        XCTAssertEqual(result.largestAbsDiff, 9)
        let o = try parseJSON(result.json(perClass: true, maxDrop: 1))
        XCTAssertTrue((o["outputs"] as? [String: [String: Any]])?["b"]?["sqnr_db"] is NSNull)
        XCTAssertNil(o["within_budget"])
        // Names differ: refused before anything runs.
        var renamed = dynamic
        renamed.graph.outputs[1].name = "c"
        XCTAssertThrowsError(try Validation.run(model: fixed, reference: renamed, data: try Dataset.npy(data), progress: false)) { e in
            XCTAssertTrue((e as? CNXError)?.message.contains("only in the model: b; only in the reference: c") == true, "\(e)")
        }
    }
}
