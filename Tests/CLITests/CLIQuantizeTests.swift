import CNXFormat
import CNXGraph
import CNXTestSupport
import XCTest

/// `quantize --int8` as a user runs it, on the bundled trained digits model.
final class CLIQuantizeTests: XCTestCase {
    let digits = Fixtures.root.appendingPathComponent("Fixtures/digits")
    func path(_ name: String) -> String { digits.appendingPathComponent(name).path }

    func testSensitivityKeepFloatAndMaxDrop() throws {
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("d.int8.cnx").path
        let r = try runTool([
            "quantize", "--int8", path("model.onnx"), out, "--calibration", path("calib.npy"),
            "--keep-float", "stages.3.blocks.1", "--sensitivity",
            "--max-drop", "0.5", "--validation", path("test.npy"), "--labels", path("test_labels.npy"),
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        // Sensitivity: every int8 layer, worst (lowest SQNR) first.
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let start = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("sensitivity") })
        let rows = lines[(start + 1)...].prefix { $0.hasPrefix("  ") }
        let values = rows.compactMap { Double($0.split(separator: " ").dropLast().last ?? "") }
        XCTAssertGreaterThan(values.count, 10)
        XCTAssertEqual(values, values.sorted(), "worst first")
        XCTAssertTrue(r.stdout.contains("accuracy:"), r.stdout)
        // The file says which layers are float32, with the method and the sample count.
        let file = try CNXReader.load(path: out)
        guard case .strings(let kept)? = file.metadata["quantization.float_layers"] else { return XCTFail("no float_layers") }
        XCTAssertTrue(kept.contains("stages.3.blocks.1.pw1") && kept.contains("stages.3.blocks.1.pw2"), "\(kept)")
        XCTAssertEqual(file.metadata["quantization.method"], .string("percentile"))
        XCTAssertEqual(file.metadata["quantization.samples"], .int(256))
        let inspect = try runTool(["inspect", out])
        XCTAssertTrue(inspect.stdout.contains("stages.0.blocks.0.pw1: int8, input scale"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("stages.3.blocks.1.pw2: float32"), inspect.stdout)
    }

    /// The quadratic GELU (the default where a block's hidden u8 step allows it) and `--exact-gelu`:
    /// the files say which they hold, and on this trained model the quadratic one is as accurate
    /// against the float32 ONNX model (validate: top-1 accuracy and logit SQNR) as exact GELU.
    func testQuadraticGELUAndExactGELU() throws {
        let dir = try scratchDirectory()
        var sqnr: [String: Double] = [:]
        for (name, extra) in [("quadratic", [String]()), ("exact", ["--exact-gelu"])] {
            let out = dir.appendingPathComponent("\(name).cnx").path
            let r = try runTool(["quantize", "--int8", path("model.onnx"), out, "--calibration", path("calib.npy")] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let file = try CNXReader.load(path: out)
            XCTAssertEqual(file.metadata["quantization.gelu"], .string(name))
            let activations = file.graph.nodes.filter { $0.op == .block }.map { $0.string("activation") ?? "gelu" }
            XCTAssertEqual(Set(activations), [name == "exact" ? "gelu" : "gelu_quadratic"])
            let inspect = try runTool(["inspect", out])
            XCTAssertEqual(inspect.stdout.contains("stages.0.blocks.0.gelu: the quadratic GELU"), name == "quadratic", inspect.stdout)
            let v = try runTool([
                "validate", out, "--reference", path("model.onnx"), "--data", digits.appendingPathComponent("test_png").path,
            ])
            XCTAssertEqual(v.status, 0, v.stderr)
            let line = try XCTUnwrap(v.stdout.split(separator: "\n").first { $0.contains("logits:") && $0.contains("SQNR") }, v.stdout)
            let words = line.split(separator: " ")
            let at = try XCTUnwrap(words.firstIndex(of: "SQNR"))
            sqnr[name] = Double(words[at + 1])
            // Top-1 against the labels: float32 and int8 columns within two images of 360.
            let accuracy = try XCTUnwrap(v.stdout.split(separator: "\n").first { $0.hasPrefix("top-1 accuracy") }, v.stdout)
            let percents = accuracy.split(separator: " ").compactMap { Double($0.dropLast()) }
            XCTAssertEqual(percents.count, 2, String(accuracy))
            XCTAssertGreaterThanOrEqual(percents.last ?? 0, (percents.first ?? 100) - 0.6, String(accuracy))
        }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(sqnr["quadratic"]), try XCTUnwrap(sqnr["exact"]) - 0.1, "\(sqnr)")
    }

    func testBadRequestsAreRefused() throws {
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("x.cnx").path
        for args in [
            ["quantize", path("model.onnx"), out, "--calibration", path("calib.npy")],  // no --int8
            ["quantize", "--int8", path("model.onnx"), out],  // no calibration
            ["quantize", "--int8", path("model.onnx"), out, "--calibration", path("calib.npy"), "--method", "magic"],
            ["quantize", "--int8", path("model.onnx"), out, "--calibration", path("calib.npy"), "--keep-float", "stages.9.blocks.0"],
        ] {
            let r = try runTool(args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), args.joined(separator: " "))
        }
    }
}

/// Calibration from a folder of images, preprocessed as the tool would for validation.
final class CLIQuantizeImagesTests: XCTestCase {
    func testCalibrationFromAnImageFolder() throws {
        let digits = Fixtures.root.appendingPathComponent("Fixtures/digits")
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("d.int8.cnx").path
        let r = try runTool([
            "quantize", "--int8", digits.appendingPathComponent("model.onnx").path, out,
            "--calibration", digits.appendingPathComponent("test_png").path,
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let file = try CNXReader.load(path: out)
        XCTAssertEqual(file.metadata["quantization.samples"], .int(360))
        XCTAssertTrue(file.graph.initializers.values.contains { $0.dtype == .int8 })
        let v = try runTool([
            "validate", out, "--reference", digits.appendingPathComponent("model.onnx").path,
            "--data", digits.appendingPathComponent("test.npy").path,
            "--labels", digits.appendingPathComponent("test_labels.npy").path, "--max-drop", "1",
        ])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
    }
}
