import CNXFormat
import CNXGraph
import CNXIO
import CNXTestSupport
@testable import CNXValidate
import XCTest

/// `convnext-convert validate` and `run IMAGE...` as a user runs them, on the bundled digits model.
final class CLIValidateTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func converted() throws -> String { try ValidateFixtures.convertedDigits.get() }

    func validate(_ model: String, _ extra: [String], reference: String = ValidateFixtures.digit("model.onnx")) throws -> ToolResult {
        try runTool(["validate", model, "--reference", reference] + extra)
    }

    var npyData: [String] { ["--data", ValidateFixtures.digit("test.npy"), "--labels", ValidateFixtures.digit("test_labels.npy")] }

    func pngData() throws -> [String] {
        let info = try ValidateFixtures.digitsInfo()
        return [
            "--data", ValidateFixtures.digit("test_png"), "--crop-pct", "1",
            "--mean", info.mean.map { String($0) }.joined(separator: ","), "--std", info.std.map { String($0) }.joined(separator: ","),
        ]
    }

    /// The float32 .cnx: exactly PyTorch's count of correct predictions, and 100% agreement with its ONNX source.
    func testDigitsCNXHasPyTorchAccuracyAndFullAgreement() throws {
        let info = try ValidateFixtures.digitsInfo()
        let r = try validate(try converted(), npyData + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try parseJSON(r.stdout)
        XCTAssertEqual(o["samples"] as? Int, 360)
        XCTAssertEqual(o["correct"] as? Int, info.torch_correct)
        XCTAssertEqual(o["reference_correct"] as? Int, info.torch_correct)
        XCTAssertEqual(try XCTUnwrap(o["top1_accuracy"] as? Double), info.torch_top1_accuracy, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(o["reference_top1_accuracy"] as? Double), info.torch_top1_accuracy, accuracy: 1e-9)
        XCTAssertEqual(o["top1_agreement"] as? Double, 1)
        XCTAssertEqual(o["top5_overlap"] as? Double, 1)
        XCTAssertGreaterThan(try XCTUnwrap(o["mean_cosine"] as? Double), 0.999999)
        if let sqnr = o["sqnr_db"] as? Double { XCTAssertGreaterThan(sqnr, 90) } else { XCTAssertTrue(o["sqnr_db"] is NSNull) }
        XCTAssertLessThan(try XCTUnwrap(o["max_abs_diff"] as? Double), 1e-4)
        XCTAssertEqual(
            (o["model"] as? [String: Any])?["runtime"] as? String,
            "cnx fast runtime, \(ProcessInfo.processInfo.activeProcessorCount) threads")
        XCTAssertTrue(r.stderr.isEmpty, "no progress when stderr is piped: \(r.stderr)")
    }

    /// The PNG folder (labels from the class folders) gives the same numbers as the .npy split.
    func testDigitsPNGFolderGivesTheSameNumbers() throws {
        let info = try ValidateFixtures.digitsInfo()
        let r = try validate(try converted(), try pngData() + ["--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try parseJSON(r.stdout)
        XCTAssertEqual(o["samples"] as? Int, 360)
        XCTAssertEqual(o["correct"] as? Int, info.torch_correct)
        XCTAssertEqual(o["reference_correct"] as? Int, info.torch_correct)
        XCTAssertEqual(o["top1_agreement"] as? Double, 1)
        // --fast: the ONNX reference optimised in memory, on the fast runtime.
        let fast = try validate(try converted(), try pngData() + ["--json", "--fast"])
        XCTAssertEqual(fast.status, 0, fast.stderr)
        let f = try parseJSON(fast.stdout)
        XCTAssertEqual(f["reference_correct"] as? Int, info.torch_correct)
        XCTAssertEqual(f["top1_agreement"] as? Double, 1)
        XCTAssertEqual(
            (f["reference"] as? [String: Any])?["runtime"] as? String,
            "cnx fast runtime, \(ProcessInfo.processInfo.activeProcessorCount) threads, optimised in memory")
    }

    func testTableByDefault() throws {
        let r = try validate(try converted(), npyData + ["--per-class", "--max-drop", "0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for text in [
            "top-1 accuracy", "97.22%", "350 / 360", "top-5 accuracy", "throughput", "agreement:  top-1 100.00% (360 / 360)",
            "mean cosine", "SQNR", "per class", "budget:     accuracy drop 0.00 points is within --max-drop 0.5",
        ] {
            XCTAssertTrue(r.stdout.contains(text), "'\(text)' not in\n\(r.stdout)")
        }
    }

    /// A copy of the .cnx whose head answers 8 for 3 and 3 for 8.
    func swappedHead() throws -> String {
        var file = try CNXReader.load(path: try converted())
        let head = try XCTUnwrap(file.graph.nodes.first { $0.op == .head })
        let w = try XCTUnwrap(file.graph.initializers[head.inputs[1]]), b = try XCTUnwrap(file.graph.initializers[head.inputs[2]])
        let classes = w.shape[1]
        var wf = w.floats, bf = b.floats
        for r in 0..<w.shape[0] { wf.swapAt(r * classes + 3, r * classes + 8) }
        bf.swapAt(3, 8)
        file.graph.initializers[head.inputs[1]] = Tensor(floats: wf, shape: w.shape)
        file.graph.initializers[head.inputs[2]] = Tensor(floats: bf, shape: b.shape)
        let path = dir.appendingPathComponent("swapped.cnx").path
        try CNXWriter.write(file, to: path)
        return path
    }

    func testMaxDropGatesWithStatusTwo() throws {
        let bad = try swappedHead()
        // The unmodified .cnx as the reference: both run on the fast runtime.
        func validate(_ model: String, _ extra: [String]) throws -> ToolResult {
            try self.validate(model, extra, reference: try converted())
        }
        // With labels: about 20 points lost (the 3s and the 8s).
        let over = try validate(bad, npyData + ["--max-drop", "1", "--json"])
        XCTAssertEqual(over.status, 2, over.stderr)
        let o = try parseJSON(over.stdout)
        let drop = try XCTUnwrap(o["accuracy_drop_points"] as? Double)
        XCTAssertGreaterThan(drop, 15)
        XCTAssertEqual(o["within_budget"] as? Bool, false)
        XCTAssertEqual(over.stderr.split(separator: "\n").count, 1, over.stderr)
        XCTAssertTrue(over.stderr.contains("exceeds --max-drop 1"), over.stderr)
        XCTAssertEqual(try validate(bad, npyData + ["--max-drop", String(drop + 0.5)]).status, 0)
        // Without labels: agreement about 80%.
        let data = ["--data", ValidateFixtures.digit("test.npy")]
        let unlabelled = try validate(bad, data + ["--max-drop", "5"])
        XCTAssertEqual(unlabelled.status, 2, unlabelled.stdout)
        XCTAssertTrue(unlabelled.stdout.contains("is below the 95%"), unlabelled.stdout)
        XCTAssertEqual(try validate(bad, data + ["--max-drop", "30"]).status, 0)
        // A wrong labels file makes no difference to the drop, both models being scored on it.
        let shifted = dir.appendingPathComponent("shifted.npy").path
        let labels = try NPY.read(path: ValidateFixtures.digit("test_labels.npy")).int64s.map { ($0 + 1) % 10 }
        try NPY.write(Tensor(int64s: labels, shape: [labels.count]), path: shifted)
        let wrong = try validate(
            try converted(), ["--data", ValidateFixtures.digit("test.npy"), "--labels", shifted, "--max-drop", "0", "--json"])
        XCTAssertEqual(wrong.status, 0, wrong.stderr)
        XCTAssertLessThan(try XCTUnwrap(try parseJSON(wrong.stdout)["top1_accuracy"] as? Double), 0.1)
    }

    /// Per layer: the float32 .cnx equals its own optimised graph everywhere; the swapped head
    /// shows its error entering at the head and nowhere before.
    func testPerLayerShowsWhereTheErrorEnters() throws {
        let same = try parseJSON(try validate(try converted(), npyData + ["--per-layer", "--json"]).stdout)
        let layers = try XCTUnwrap(same["per_layer"] as? [[String: Any]])
        XCTAssertEqual(
            layers.map { $0["layer"] as? String },
            [
                "stem", "stages.0.blocks.0", "stages.0.blocks.1", "stages.1.downsample", "stages.1.blocks.0",
                "stages.1.blocks.1", "stages.2.downsample", "stages.2.blocks.0", "stages.2.blocks.1",
                "stages.3.downsample", "stages.3.blocks.0", "stages.3.blocks.1", "head",
            ])
        for l in layers { XCTAssertLessThan(try XCTUnwrap(l["max_abs_diff"] as? Double), 1e-5, "\(l)") }
        let r = try validate(try swappedHead(), npyData + ["--per-layer", "--json"], reference: try converted())
        let bad = try XCTUnwrap(try parseJSON(r.stdout)["per_layer"] as? [[String: Any]])
        for l in bad.dropLast() { XCTAssertEqual(l["max_abs_diff"] as? Double, 0, "\(l)") }
        let head = try XCTUnwrap(bad.last)
        XCTAssertLessThan(try XCTUnwrap(head["sqnr_db"] as? Double), 30)
        XCTAssertLessThan(try XCTUnwrap(head["local_sqnr_db"] as? Double), 30)
    }

    /// A model exported with a fixed batch of 1 gets its samples one at a time.
    func testFixedBatchModel() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { !$0.dynamic_batch && !$0.dynamic_hw && $0.exporter == "legacy" })
        let x = try NPY.read(path: entry.path(entry.cases[0].input))
        let three = Tensor(floats: x.floats + x.floats.map { -$0 } + x.floats.map { $0 * 0.5 }, shape: [3] + Array(x.shape.dropFirst()))
        let data = dir.appendingPathComponent("three.npy").path
        try NPY.write(three, path: data)
        let cnx = dir.appendingPathComponent("fixed.cnx").path
        XCTAssertEqual(try runTool([entry.model, cnx]).status, 0)
        let r = try validate(cnx, ["--data", data, "--json", "--batch", "2"], reference: entry.model)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try parseJSON(r.stdout)
        XCTAssertEqual(o["samples"] as? Int, 3)
        XCTAssertEqual(o["top1_agreement"] as? Double, 1)
    }

    func testBadInputsAreOneLineAndStatusOne() throws {
        let model = try converted()
        let broken = dir.appendingPathComponent("broken")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: ValidateFixtures.image("variants/rgb8.png"), toPath: broken.appendingPathComponent("a.png").path)
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0]).write(to: broken.appendingPathComponent("b.png"))
        let cases: [([String], String)] = [
            (["--data", dir.appendingPathComponent("absent.npy").path], "absent.npy"),
            (["--data", ValidateFixtures.digit("test.npy"), "--labels", ValidateFixtures.digit("test_expected.npy")], "test_expected.npy"),
            (["--data", ValidateFixtures.digit("calib.npy"), "--labels", ValidateFixtures.digit("test_labels.npy")], "256 samples"),
            (["--data", broken.path], broken.appendingPathComponent("b.png").path),
        ]
        for (args, mention) in cases {
            let r = try validate(model, args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stdout)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(mention), "'\(mention)' not in \(r.stderr)")
        }
        let filter = try validate(model, ["--data", ValidateFixtures.digit("test.npy"), "--interpolation", "cubic"])
        XCTAssertNotEqual(filter.status, 0)
        XCTAssertTrue(filter.stderr.contains("nearest, box, bilinear, hamming, bicubic, lanczos"), filter.stderr)
        XCTAssertNotEqual(try validate(model, ["--data", ValidateFixtures.digit("test.npy"), "--resize", "sideways"]).status, 0)
    }
}

/// `convnext-convert run MODEL IMAGE...`: the top classes with their names.
final class CLIRunImagesTests: XCTestCase {
    func testRunPrintsTopClasses() throws {
        let model = try ValidateFixtures.convertedDigits.get()
        let info = try ValidateFixtures.digitsInfo()
        let images = [ValidateFixtures.digit("test_png/3/0008.png"), ValidateFixtures.digit("test_png/7/0013.png")]
        let flags = ["--crop-pct", "1", "--mean", String(info.mean[0]), "--std", String(info.std[0])]
        let r = try runTool(["run", model] + images + ["--top", "2"] + flags)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 6, r.stdout)
        XCTAssertEqual(lines[0], images[0])
        XCTAssertTrue(lines[1].hasSuffix("class 3"), lines[1])
        XCTAssertEqual(lines[3], images[1])
        XCTAssertTrue(lines[4].hasSuffix("class 7"), lines[4])
        let dir = try scratchDirectory()
        let names = dir.appendingPathComponent("names.txt")
        try Data(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"].joined(separator: "\n").utf8).write(
            to: names)
        let named = try runTool(["run", model, images[0], "--top", "1", "--labels", names.path] + flags)
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertTrue(named.stdout.contains("three (3)"), named.stdout)
        try Data("just one\n".utf8).write(to: names)
        let wrong = try runTool(["run", model, images[0], "--labels", names.path] + flags)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("1 names (one a line) for a model with 10 classes"), wrong.stderr)
    }

    func testImageNetNamesForThousandClasses() throws {
        XCTAssertEqual(imagenetClassNames.count, 1000)
        XCTAssertEqual(imagenetClassNames[0], "tench")
        XCTAssertEqual(imagenetClassNames[999], "toilet tissue")
        XCTAssertEqual(try Classification.classNames(classes: 1000, metadata: [:], labelsFile: nil)[1], "goldfish")
        XCTAssertEqual(
            try Classification.classNames(classes: 2, metadata: [MetadataKey.classNames: .strings(["cat", "dog"])], labelsFile: nil),
            ["cat", "dog"])
        XCTAssertEqual(try Classification.classNames(classes: 3, metadata: [:], labelsFile: nil), ["0", "1", "2"])
    }
}
