import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// Shared helpers for the command-line tests of issue #13.
class CLIFolderTestCase: XCTestCase {
    var dir: URL!
    let fixtures = Fixtures.root.appendingPathComponent("Fixtures")
    var digits: URL { fixtures.appendingPathComponent("digits") }
    var backbone: URL { fixtures.appendingPathComponent("backbone") }

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @discardableResult
    func ok(_ arguments: [String], environment: [String: String]? = nil, file: StaticString = #filePath, line: UInt = #line) throws
        -> ToolResult
    {
        let r = try runTool(arguments, in: dir, environment: environment)
        XCTAssertEqual(r.status, 0, "\(arguments.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// Exit status 1 and exactly one line on stderr, which is returned.
    func oneLineError(_ arguments: [String], environment: [String: String]? = nil, file: StaticString = #filePath, line: UInt = #line)
        throws -> String
    {
        let r = try runTool(arguments, in: dir, environment: environment)
        XCTAssertEqual(r.status, 1, "\(arguments.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stdout, "", file: file, line: line)
        return r.stderr
    }

    func json(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text, file: file, line: line)
    }
}

/// The arrays of an .npz whose entries are stored (as numpy's `savez` and this tool write them),
/// read from the zip local headers.
func readNPZ(_ path: String) throws -> [String: Tensor] {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    func u16(_ i: Int) -> Int { Int(data[i]) | Int(data[i + 1]) << 8 }
    func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
    var arrays: [String: Tensor] = [:]
    var at = 0
    while at + 30 <= data.count, u32(at) == 0x04034b50 {
        guard u16(at + 8) == 0 else { throw CNXError("\(path): a compressed entry") }
        let size = u32(at + 18), nameLength = u16(at + 26), extra = u16(at + 28)
        let name = String(decoding: data[(at + 30)..<(at + 30 + nameLength)], as: UTF8.self)
        let start = at + 30 + nameLength + extra
        arrays[String(name.dropLast(4))] = try NPY.parse(Data(data[start..<(start + size)]))
        at = start + size
    }
    return arrays
}

/// Backbones are verified and reported as what they are.
final class CLIBackboneTests: CLIFolderTestCase {
    func testFeaturesAreVerifiedAndRecordedWithoutClasses() throws {
        let r = try ok([backbone.appendingPathComponent("classifier.onnx").path, "bb.cnx", "--features", "1,2,3"])
        XCTAssertTrue(r.stdout.contains("verified:  relative error"), r.stdout)
        XCTAssertTrue(r.stdout.contains("stage outputs"), r.stdout)
        XCTAssertTrue(r.stdout.contains("backbone: stages 1, 2, 3; no classifier"), r.stdout)
        XCTAssertFalse(r.stdout.contains("classes"), r.stdout)
        XCTAssertFalse(r.stdout.contains("fuse-head"), r.stdout)
        let m = try CNXReader.load(path: path("bb.cnx")).metadata
        XCTAssertNil(m[MetadataKey.classes])
        XCTAssertEqual(m["convnext.features"], .ints([1, 2, 3]))
        XCTAssertEqual(m["model.outputs"], .strings(["stage1", "stage2", "stage3"]))
        let passes = try XCTUnwrap(m[MetadataKey.converterPasses]?.stringsValue)
        XCTAssertTrue(passes.contains("extract-features") && !passes.contains("fuse-head"), "\(passes)")
        // What was written matches ONNX Runtime's stage outputs of the timm features_only export.
        try ok(["run", "bb.cnx", "--input", backbone.appendingPathComponent("input.npy").path, "--output", "f.npz"])
        let npz = try readNPZ(path("f.npz"))
        XCTAssertEqual(npz.keys.sorted(), ["stage1", "stage2", "stage3"])
        for s in 1...3 {
            let y = try XCTUnwrap(npz["stage\(s)"])
            let expected = try NPY.read(path: backbone.appendingPathComponent("expected_stage\(s).npy").path)
            XCTAssertEqual(y.shape, expected.shape)
            XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, "stage\(s)")
        }
        let inspect = try ok(["inspect", "bb.cnx"])
        XCTAssertTrue(inspect.stdout.contains("convnext.features = [1, 2, 3]"), inspect.stdout)
    }

    /// The tensors the verification compares a backbone with are the original graph's stage
    /// outputs: the same values ONNX Runtime gives for timm's features_only model.
    func testVerificationReferenceIsTheOriginalStageOutput() throws {
        let graph = try ONNXReader.load(path: backbone.appendingPathComponent("classifier.onnx").path)
        let names = try XCTUnwrap(Converter.stageOutputs(graph, stages: [0, 1, 2, 3]))
        var g = graph
        g.outputs = names.map { ValueInfo(name: $0, dtype: .float32, shape: nil) }
        let x = try NPY.read(path: backbone.appendingPathComponent("input.npy").path)
        let out = try ReferenceExecutor(graph: g).run([graph.inputs[0].name: x])
        for (s, name) in names.enumerated() {
            let expected = try NPY.read(path: backbone.appendingPathComponent("expected_stage\(s).npy").path)
            let y = try XCTUnwrap(out[name])
            XCTAssertEqual(y.shape, expected.shape, "stage\(s)")
            XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-5, "stage\(s)")
        }
        // A stage that does not exist is not guessed.
        XCTAssertNil(Converter.stageOutputs(graph, stages: [4]))
    }

    func testAFeaturesOnlyExportHasNoClasses() throws {
        let onnx = backbone.appendingPathComponent("backbone.onnx").path
        let inspect = try ok(["inspect", onnx])
        XCTAssertTrue(inspect.stdout.contains("classes:  none (a backbone: 4 feature maps)"), inspect.stdout)
        let r = try ok([onnx, "b.cnx"])
        XCTAssertTrue(r.stdout.contains("verified:"), r.stdout)
        XCTAssertFalse(r.stdout.contains("classes"), r.stdout)
        XCTAssertNil(try CNXReader.load(path: path("b.cnx")).metadata[MetadataKey.classes])
        // A backbone on an image: its feature maps, with --output.
        let image = fixtures.appendingPathComponent("images/flower.jpg").path
        let e = try oneLineErrorAfterNotes(["run", "b.cnx", image])
        XCTAssertTrue(e.contains("backbone") && e.contains("--output FILE.npz"), e)
        let run = try ok(["run", "b.cnx", image, "--output", "maps.npz"])
        XCTAssertTrue(run.stderr.contains("stage3 [1, 32, 2, 2]"), run.stderr)
    }

    /// The error line of a run that printed its preprocessing first.
    func oneLineErrorAfterNotes(_ arguments: [String]) throws -> String {
        let r = try runTool(arguments, in: dir)
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        return errors.first.map(String.init) ?? ""
    }
}

/// Errors that named the wrong thing, and the version.
final class CLIMessageTests: CLIFolderTestCase {
    func testTypoedCommandsAreAnsweredWithTheNearestOne() throws {
        try FileManager.default.copyItem(atPath: digits.appendingPathComponent("model.onnx").path, toPath: path("model.onnx"))
        let before = try Data(contentsOf: URL(fileURLWithPath: path("model.onnx")))
        XCTAssertEqual(
            try oneLineError(["inpsect", "model.onnx"]), "error: 'inpsect' is not a command or a file; did you mean 'inspect'?\n")
        XCTAssertEqual(
            try oneLineError(["quantise", "--int8", "model.onnx", "q.cnx"]),
            "error: 'quantise' is not a command or a file; did you mean 'quantize'?\n")
        XCTAssertEqual(
            try oneLineError(["valdate", "model.onnx"]), "error: 'valdate' is not a command or a file; did you mean 'validate'?\n")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("model.onnx"))), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("q.cnx")))
    }

    func testMissingAndMisnamedFiles() throws {
        XCTAssertEqual(try oneLineError(["inspect", "nosuch.cnx"]), "error: nosuch.cnx: no such file\n")
        XCTAssertEqual(
            try oneLineError(["run", "nosuch.cnx", "--input", "x.npy", "--output", "y.npy"]), "error: nosuch.cnx: no such file\n")
        XCTAssertEqual(try oneLineError(["nosuch.onnx", "y.cnx"]), "error: nosuch.onnx: no such file\n")
        try Data("just some notes\n".utf8).write(to: URL(fileURLWithPath: path("notes.cnx")))
        let text = try oneLineError(["inspect", "notes.cnx"])
        XCTAssertTrue(text.contains("notes.cnx: a text file, not a .cnx model"), text)
        XCTAssertFalse(text.contains("ModelProto") || text.contains("read as ONNX"), text)
    }

    func testOptionErrorsShowTheCommandsOwnUsage() throws {
        let r = try runTool(
            [
                "quantize", "--int8", digits.appendingPathComponent("model.onnx").path, "q.cnx",
                "--calibration", digits.appendingPathComponent("calib.npy").path, "--method", "magic",
            ], in: dir)
        XCTAssertEqual(r.status, 1, "a bad option is bad input: status 1, as every other")
        XCTAssertTrue(r.stderr.contains("--method must be one of minmax, percentile, entropy"), r.stderr)
        XCTAssertTrue(r.stderr.contains("Usage: convnext-convert quantize"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Usage: convnext-convert <subcommand>"), r.stderr)
        let run = try runTool(["run", "m.cnx"], in: dir)
        XCTAssertTrue(run.stderr.contains("Usage: convnext-convert run"), run.stderr)
    }

    func testVersionAndUnknownISA() throws {
        let v = try ok(["--version"])
        XCTAssertEqual(v.stdout, "convnext-convert \(converterVersion)\n")
        let digitsModel = digits.appendingPathComponent("model.onnx").path
        XCTAssertTrue(try ok(["inspect", digitsModel]).stdout.contains("read by:    convnext-convert \(converterVersion)"))
        try ok([digitsModel, "d.cnx"])
        XCTAssertEqual(try CNXReader.load(path: path("d.cnx")).metadata[MetadataKey.converterVersion], .string(converterVersion))
        let e = try oneLineError(["inspect", "d.cnx"], environment: ["CNX_ISA": "avx9000"])
        XCTAssertTrue(e.contains("CNX_ISA=avx9000") && e.contains("scalar, avx2, avxvnni, avx512, avx512vnni, neon, dotprod, i8mm"), e)
        // Every level of the kernels' table is accepted, whatever the CPU (a level of the other
        // architecture gives the scalar paths).
        for level in ["avxvnni", "neon", "i8mm"] { try ok(["inspect", "d.cnx"], environment: ["CNX_ISA": level]) }
        let bench = try ok(["bench", "d.cnx", "--iterations", "1", "--json"], environment: ["CNX_ISA": "scalar"])
        XCTAssertTrue(try json(bench.stdout)["kernels"].map { "\($0)".hasPrefix("scalar") } ?? false, bench.stdout)
        // and says what each kernel family's dispatcher picked (float, int8, half): all lowered to scalar.
        let isa = try json(bench.stdout)["isa"] as? [String: String]
        XCTAssertEqual(isa, ["float": "scalar", "int8": "scalar", "half": "scalar"], bench.stdout)
        XCTAssertTrue(try ok(["bench", "d.cnx", "--iterations", "1"]).stdout.contains("kernels:"))
    }

    func testBenchSizeOnAFixedSizeModelIsRefused() throws {
        try ok([digits.appendingPathComponent("model.onnx").path, "d.cnx"])
        let e = try oneLineError(["bench", "d.cnx", "--size", "256", "--iterations", "1"])
        XCTAssertTrue(e.contains("fixed at 32x32") && e.contains("--size 256"), e)
    }

    func testHelpSaysWhatEachCommandReads() throws {
        let root = try ok(["--help"]).stdout
        for s in [".safetensors", ".pth", "timm hub", "transformers", ".cnx", "validate", "--generate-completion-script"] {
            XCTAssertTrue(root.contains(s), "root help lacks \(s)")
        }
        XCTAssertTrue(try ok(["convert", "--help"]).stdout.contains(".safetensors"))
        for command in ["", "convert", "quantize", "inspect", "run", "validate", "bench"] {
            let help = try ok(command.isEmpty ? ["--help"] : [command, "--help"]).stdout
            // No example line is cut in two at 80 columns.
            let lines = help.split(separator: "\n", omittingEmptySubsequences: false)
            for (a, b) in zip(lines, lines.dropFirst()) where a.hasPrefix("  convnext-convert") {
                XCTAssertTrue(b.isEmpty || b.hasPrefix("  "), "\(command): '\(a)' wraps into '\(b)'")
            }
            // Defaults are printed once, by the argument parser.
            for line in help.split(separator: "\n") {
                let l = line.lowercased()
                XCTAssertLessThanOrEqual(l.components(separatedBy: "default").count - 1, 1, "\(command): \(line)")
            }
        }
    }
}

/// One vocabulary for layers: what validate --per-layer and inspect print is what
/// --keep-float and --sensitivity take.
final class CLILayerNameTests: CLIFolderTestCase {
    func testPerLayerNamesAreKeepFloatNames() throws {
        let onnx = digits.appendingPathComponent("model.onnx").path
        try ok([onnx, "d.cnx"])
        let perLayer = try json(
            try ok([
                "validate", "d.cnx", "--reference", onnx, "--data", digits.appendingPathComponent("test.npy").path,
                "--per-layer", "--json",
            ]).stdout)
        let names = try XCTUnwrap((perLayer["per_layer"] as? [[String: Any]])?.compactMap { $0["layer"] as? String })
        XCTAssertEqual(names.count, 13)
        let inspect = try json(try ok(["inspect", "d.cnx", "--json"]).stdout)
        XCTAssertEqual((inspect["layers"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, names)
        let onnxInspect = try json(try ok(["inspect", onnx, "--json"]).stdout)
        XCTAssertEqual(onnxInspect["layers"] as? [String], names)
        // Pasted into --keep-float: a block, a downsample, the head.
        let picked = [names[2], names[3], names.last!]
        let q = try ok(
            [
                "quantize", "--int8", onnx, "q.cnx", "--calibration", digits.appendingPathComponent("calib.npy").path,
                "--keep-float",
            ] + picked + ["--sensitivity", "--json"])
        let report = try json(q.stdout)
        let kept = try XCTUnwrap(report["float_layers"] as? [String])
        for p in picked { XCTAssertTrue(kept.contains { $0 == p || $0.hasPrefix(p + ".") }, "\(p) not kept: \(kept)") }
        let sensitivity = try XCTUnwrap(report["sensitivity"] as? [[String: Any]])
        XCTAssertGreaterThan(sensitivity.count, 10)
        for s in sensitivity {
            let layer = try XCTUnwrap(s["layer"] as? String)
            XCTAssertTrue(names.contains { layer == $0 || layer.hasPrefix($0 + ".") }, layer)
        }
        let metadata = try CNXReader.load(path: path("q.cnx")).metadata
        for layer in metadata["quantization.float_layers"]?.stringsValue ?? [] {
            XCTAssertTrue(names.contains { layer == $0 || layer.hasPrefix($0 + ".") }, layer)
        }
    }
}

/// Preprocessing and class names recorded by convert, and said by run and validate.
final class CLIPreprocessingTests: CLIFolderTestCase {
    func testRecordedPreprocessingGivesTheAccuracyPyTorchMeasured() throws {
        let onnx = digits.appendingPathComponent("model.onnx").path
        let info = try json(String(decoding: try Data(contentsOf: digits.appendingPathComponent("info.json")), as: UTF8.self))
        let mean = try XCTUnwrap(info["mean"] as? [Double]).map { String($0) }.joined(separator: ",")
        let std = try XCTUnwrap(info["std"] as? [Double]).map { String($0) }.joined(separator: ",")
        let torchAccuracy = try XCTUnwrap(info["torch_top1_accuracy"] as? Double)
        try Data((0..<10).map { "digit \($0)\n" }.joined().utf8).write(to: URL(fileURLWithPath: path("names.txt")))
        let r = try ok([
            onnx, "d.cnx", "--mean", mean, "--std", std, "--crop-pct", "1", "--interpolation", "bicubic", "--labels", "names.txt",
        ])
        XCTAssertTrue(r.stdout.contains("recorded:"), r.stdout)
        let m = try CNXReader.load(path: path("d.cnx")).metadata
        XCTAssertEqual(m[MetadataKey.classNames]?.stringsValue?.first, "digit 0")
        XCTAssertEqual(m[MetadataKey.interpolation], .string("bicubic"))
        XCTAssertEqual(m[MetadataKey.cropPct], .float(1))
        let images = digits.appendingPathComponent("test_png").path
        let v = try ok(["validate", "d.cnx", "--reference", onnx, "--data", images, "--json"])
        XCTAssertFalse(v.stderr.contains("warning"), v.stderr)
        let report = try json(v.stdout)
        XCTAssertEqual(try XCTUnwrap(report["top1_accuracy"] as? Double), torchAccuracy, accuracy: 1e-9)
        let pre = try XCTUnwrap(report["preprocessing"] as? [String: Any])
        XCTAssertEqual(
            pre["source"] as? [String: String],
            [
                "size": "d.cnx's input shape", "crop_pct": "d.cnx metadata",
                "interpolation": "d.cnx metadata", "mean": "d.cnx metadata", "std": "d.cnx metadata",
            ])
        // Without the recorded settings: the defaults are named, with a warning.
        let plain = try ok(["validate", onnx, "--reference", onnx, "--data", images])
        XCTAssertTrue(plain.stderr.contains("warning:") && plain.stderr.contains("ImageNet's defaults"), plain.stderr)
        XCTAssertTrue(
            plain.stdout.contains("mean, std from ImageNet's defaults") || plain.stdout.contains("from ImageNet's defaults"), plain.stdout)
        // run names the source too, and the recorded class names.
        let run = try ok(["run", "d.cnx", digits.appendingPathComponent("test_png/3").path, "--top", "1"])
        XCTAssertTrue(run.stderr.contains("preprocessing:") && run.stderr.contains("d.cnx metadata"), run.stderr)
        XCTAssertFalse(run.stderr.contains("warning"), run.stderr)
        XCTAssertTrue(run.stdout.contains("digit 3 (3)"), run.stdout)
        // A size the model's input contradicts, or the wrong number of names, is refused.
        XCTAssertTrue(try oneLineError([onnx, "e.cnx", "--size", "224"]).contains("fixed at 32x32"))
        try Data("a\nb\n".utf8).write(to: URL(fileURLWithPath: path("two.txt")))
        XCTAssertTrue(try oneLineError([onnx, "e.cnx", "--labels", "two.txt"]).contains("2 class names for a model with 10 classes"))
        // A .cnx converted again to record more: still recognised, its passes kept.
        try Data((0..<10).map { "d\($0)\n" }.joined().utf8).write(to: URL(fileURLWithPath: path("short.txt")))
        let again = try ok(["d.cnx", "d2.cnx", "--labels", "short.txt"])
        XCTAssertTrue(again.stdout.contains("depths [2, 2, 2, 2]") && again.stdout.contains("verified:"), again.stdout)
        let m2 = try CNXReader.load(path: path("d2.cnx")).metadata
        XCTAssertEqual(m2[MetadataKey.classNames]?.stringsValue?.first, "d0")
        XCTAssertEqual(m2[MetadataKey.mean], m[MetadataKey.mean])
        XCTAssertEqual(m2[MetadataKey.converterPasses], m[MetadataKey.converterPasses])
    }
}

/// `run` on images, folders, globs, bad images, fixed batches, with --output and --json.
final class CLIRunImagesTests: CLIFolderTestCase {
    var dynamicModel: String { Fixtures.models.appendingPathComponent("timm_linear_dynamo_hw/model.onnx").path }

    func testImagesWithOutputMatchTorchvisionPreprocessing() throws {
        let image = fixtures.appendingPathComponent("images/flower.jpg").path
        try ok([dynamicModel, "m.cnx"])
        let r = try ok(["run", "m.cnx", image, "--size", "224", "--output", "logits.npy", "--json"])
        let report = try json(r.stdout)
        XCTAssertEqual(((report["images"] as? [[String: Any]])?.first?["row"]) as? Int, 0)
        XCTAssertEqual((report["preprocessing"] as? [String: Any])?["height"] as? Int, 224)
        // The oracle: the same model on torchvision's tensor of the same image.
        try ok(["run", "m.cnx", "--input", fixtures.appendingPathComponent("images/flower_bicubic224.npy").path, "--output", "oracle.npy"])
        let a = try NPY.read(path: path("logits.npy")), b = try NPY.read(path: path("oracle.npy"))
        XCTAssertEqual(a.shape, [1, 17])
        XCTAssertLessThanOrEqual(relativeError(a.floats, b.floats), 2e-3)
    }

    func testFoldersGlobsAndABadImage() throws {
        let folder = digits.appendingPathComponent("test_png/7").path
        try ok([digits.appendingPathComponent("model.onnx").path, "d.cnx"])
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: path("broken.png")))
        let count = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".png") }.count
        let r = try runTool(
            ["run", "d.cnx", folder, "broken.png", "\(folder)/00*.png", "missing.jpg", "--json", "--output", "all.npy"], in: dir)
        XCTAssertEqual(r.status, 1, r.stderr)
        let report = try json(r.stdout)
        let images = try XCTUnwrap(report["images"] as? [[String: Any]])
        let globbed = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("00") && $0.hasSuffix(".png") }
            .count
        XCTAssertEqual(images.count, count + globbed + 2)
        XCTAssertEqual(report["failed"] as? Int, 2)
        XCTAssertEqual(images.filter { $0["error"] != nil }.compactMap { $0["file"] as? String }.sorted(), ["broken.png", "missing.jpg"])
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }.count, 2, r.stderr)
        // The rest ran and were written, one row each, in order.
        let y = try NPY.read(path: path("all.npy"))
        XCTAssertEqual(y.shape, [count + globbed, 10])
        XCTAssertEqual(images.compactMap { $0["row"] as? Int }, Array(0..<(count + globbed)))
        // Nothing to run at all (a mistyped name): one line naming each argument, no notes first,
        // and no output written.
        XCTAssertEqual(try oneLineError(["run", "d.cnx", "missing.jpg"]), "error: missing.jpg: no such file\n")
        XCTAssertEqual(
            try oneLineError(["run", "d.cnx", "missing.jpg", "\(folder)/zz*.png", "--output", "none.npy"]),
            "error: missing.jpg: no such file; \(folder)/zz*.png: no file matches this pattern\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("none.npy")))
    }

    func testABatchLargerThanAFixedBatchIsSplit() throws {
        let entry = Fixtures.models.appendingPathComponent("timm_linear_b2_op17")
        let x = try NPY.read(path: entry.appendingPathComponent("input.npy").path)
        let expected = try NPY.read(path: entry.appendingPathComponent("expected.npy").path)
        XCTAssertEqual(x.shape[0], 2)
        // Five samples: rows 0, 1, 0, 1, 0 of the fixture's input, for a model fixed at batch 2.
        let per = x.count / 2, cols = expected.count / 2
        var five: [Float] = [], want: [Float] = []
        for i in [0, 1, 0, 1, 0] {
            five += x.floats[(i * per)..<((i + 1) * per)]
            want += expected.floats[(i * cols)..<((i + 1) * cols)]
        }
        try NPY.write(Tensor(floats: five, shape: [5] + Array(x.shape.dropFirst())), path: path("five.npy"))
        try ok([entry.appendingPathComponent("model.onnx").path, "b2.cnx"])
        for model in [entry.appendingPathComponent("model.onnx").path, "b2.cnx"] {
            try ok(["run", model, "--input", "five.npy", "--output", "y.npy"])
            let y = try NPY.read(path: path("y.npy"))
            XCTAssertEqual(y.shape, [5, cols], model)
            XCTAssertLessThanOrEqual(relativeError(y.floats, want), 1e-4, model)
        }
    }
}

/// quantize --max-drop says what it does while it searches.
final class CLIQuantizeProgressTests: CLIFolderTestCase {
    func testMaxDropPrintsEachStepAndWarnsWhenFinerThanOneSample() throws {
        let onnx = digits.appendingPathComponent("model.onnx").path
        let x = try NPY.read(path: digits.appendingPathComponent("test.npy").path)
        let labels = try NPY.read(path: digits.appendingPathComponent("test_labels.npy").path)
        let n = 32, per = x.count / x.shape[0]
        try NPY.write(Tensor(floats: Array(x.floats.prefix(n * per)), shape: [n] + Array(x.shape.dropFirst())), path: path("val.npy"))
        try NPY.write(Tensor(int64s: Array(labels.int64s.prefix(n)), shape: [n]), path: path("val_labels.npy"))
        let r = try ok([
            "quantize", "--int8", onnx, "q.cnx", "--calibration", digits.appendingPathComponent("calib.npy").path,
            "--max-drop", "1", "--validation", "val.npy", "--labels", "val_labels.npy",
        ])
        XCTAssertTrue(r.stderr.contains("--max-drop 1 is finer than one sample of the 32 validation samples (3.12 points each)"), r.stderr)
        // The head is float32 by default (one row per image: its range is not worth int8), so the
        // search starts from that one layer.
        XCTAssertTrue(r.stderr.contains("max-drop: 1 layer float32, drop"), r.stderr)
        XCTAssertTrue(r.stdout.contains("accuracy:"), r.stdout)
    }
}

/// The README's Swift example is a target of the package; it runs as written and agrees with
/// `run`.
final class CLIExampleTests: CLIFolderTestCase {
    func testREADMEExampleIsTheBuiltExampleAndRuns() throws {
        let readme = String(decoding: try Data(contentsOf: Fixtures.root.appendingPathComponent("README.md")), as: UTF8.self)
        let example = String(
            decoding: try Data(contentsOf: Fixtures.root.appendingPathComponent("Examples/Classify/main.swift")), as: UTF8.self)
        XCTAssertTrue(readme.contains("```swift\n" + example + "```"), "the README's Swift block is not Examples/Classify/main.swift")
        XCTAssertTrue(example.hasPrefix("import CNXKit\n") && !example.contains("import CNXRuntime"))
        for usage in ["convnext-convert validate MODEL", "convnext-convert run MODEL IMAGE", "--generate-completion-script"] {
            XCTAssertTrue(readme.contains(usage), "README lacks \(usage)")
        }
        let binary = Fixtures.tool.deletingLastPathComponent().appendingPathComponent("classify-example")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: binary.path), binary.path)
        try ok([digits.appendingPathComponent("model.onnx").path, "model.cnx", "--mean", "0.3054", "--std", "0.376", "--crop-pct", "1"])
        try FileManager.default.copyItem(
            at: digits.appendingPathComponent("test_png/3/0008.png"), to: dir.appendingPathComponent("photo.jpg"))
        try FileManager.default.copyItem(at: digits.appendingPathComponent("test.npy"), to: dir.appendingPathComponent("batch.npy"))
        let process = Process()
        process.executableURL = binary
        process.currentDirectoryURL = dir
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        // The example's top class and probability are run's.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 5, text)  // the variant (none recorded: empty), three classes, the end
        let top = lines[1].split(separator: " ")
        let run = try ok(["run", "model.cnx", "photo.jpg", "--top", "1", "--json"])
        let best = try XCTUnwrap(((try json(run.stdout)["images"] as? [[String: Any]])?.first?["top"] as? [[String: Any]])?.first)
        XCTAssertEqual(String(top[0]), best["name"] as? String)
        XCTAssertEqual(Double(top[1]) ?? 0, best["probability"] as? Double ?? -1, accuracy: 1e-6)
        // And its logits are the ones ONNX Runtime gives for the batch.
        let logits = try NPY.read(path: path("logits.npy"))
        let expected = try NPY.read(path: digits.appendingPathComponent("test_expected.npy").path)
        XCTAssertLessThanOrEqual(relativeError(logits.floats, expected.floats), 1e-4)
    }
}
