import CNXFormat
import CNXGraph
import CNXTestSupport
import XCTest

/// Every way a user can point a command's output at its own input (issue #13): refused with
/// exit status 1 and one line on stderr, every input byte-identical afterwards, nothing left behind.
final class CLIInputsAreSacredTests: XCTestCase {
    var dir: URL!
    let digits = Fixtures.root.appendingPathComponent("Fixtures/digits")
    let dynamo = Fixtures.models.appendingPathComponent("timm_linear_dynamo")

    override func setUpWithError() throws {
        dir = try temporaryDirectory()
        let fm = FileManager.default
        try fm.copyItem(at: Fixtures.models.appendingPathComponent("timm_linear_op17/model.onnx"), to: dir.appendingPathComponent("m.onnx"))
        try fm.copyItem(at: Fixtures.models.appendingPathComponent("timm_linear_op17/input.npy"), to: dir.appendingPathComponent("in.npy"))
        try fm.copyItem(at: digits.appendingPathComponent("model.onnx"), to: dir.appendingPathComponent("digits.onnx"))
        try fm.copyItem(at: digits.appendingPathComponent("calib.npy"), to: dir.appendingPathComponent("calib.npy"))
        try fm.createDirectory(at: dir.appendingPathComponent("dyn"), withIntermediateDirectories: false)
        for f in ["model.onnx", "model.onnx.data", "input.npy"] {
            try fm.copyItem(at: dynamo.appendingPathComponent(f), to: dir.appendingPathComponent("dyn/\(f)"))
        }
        try fm.copyItem(
            at: Fixtures.root.appendingPathComponent("Fixtures/checkpoints/timm_linear/hub"), to: dir.appendingPathComponent("hub"))
        try fm.copyItem(
            at: Fixtures.root.appendingPathComponent("Fixtures/images/flower.png"), to: dir.appendingPathComponent("flower.png"))
        try Data((0..<10).map { "digit \($0)\n" }.joined().utf8).write(to: dir.appendingPathComponent("names.txt"))
        XCTAssertEqual(try runTool(["m.onnx", "m.cnx"], in: dir).status, 0)
        XCTAssertEqual(try runTool(["digits.onnx", "digits.cnx"], in: dir).status, 0)
        try fm.copyItem(at: dir.appendingPathComponent("m.cnx"), to: dir.appendingPathComponent("existing.cnx"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// SHA-256 of every file under the folder, by relative path.
    func snapshot() throws -> [String: String] {
        var sums: [String: String] = [:]
        let walker = try XCTUnwrap(FileManager.default.enumerator(atPath: dir.path))
        for case let name as String in walker {
            var isDirectory: ObjCBool = false
            let path = dir.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            sums[name] = try SHA256.hex(path: path)
        }
        return sums
    }

    /// Runs `arguments` in the folder: exit status 1, one stderr line holding every `mentions`,
    /// nothing on stdout, and every file (inputs included) byte-identical, none added.
    func assertRefused(_ arguments: [String], mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let before = try snapshot()
        let r = try runTool(arguments, in: dir)
        let label = arguments.joined(separator: " ")
        XCTAssertEqual(r.status, 1, "\(label): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(label): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertEqual(r.stdout, "", label, file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(label): '\(m)' not in \(r.stderr)", file: file, line: line) }
        XCTAssertEqual(try snapshot(), before, "\(label) changed or added files", file: file, line: line)
    }

    func testSwappedArgumentsDoNotOverwriteTheONNXFile() throws {
        // `convnext-convert existing.cnx model.onnx`: the .cnx would be converted and written over the ONNX file.
        try assertRefused(["existing.cnx", "m.onnx"], mentions: ["m.onnx", "ONNX", "refusing"])
        // A new name that is not .cnx is refused too (the output is a .cnx).
        try assertRefused(["m.cnx", "new.onnx"], mentions: ["new.onnx", ".cnx"])
    }

    func testOutputIsTheInput() throws {
        try assertRefused(["m.onnx", "m.onnx"], mentions: ["m.onnx", "the input model"])
        try assertRefused(["m.onnx", "./m.onnx"], mentions: ["./m.onnx", "the input model"])
        try assertRefused(["convert", "m.cnx", "m.cnx"], mentions: ["m.cnx", "the input model"])
        try assertRefused(["convert", "./m.cnx", dir.appendingPathComponent("m.cnx").path], mentions: ["the input model"])
        // --force allows replacing another format, never an input.
        try assertRefused(["m.onnx", "m.onnx", "--force"], mentions: ["the input model"])
    }

    func testSymbolicAndHardLinksToTheInput() throws {
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link.cnx").path, withDestinationPath: "m.cnx")
        try assertRefused(["m.cnx", "link.cnx"], mentions: ["link.cnx", "the input model"])
        XCTAssertEqual(link(dir.appendingPathComponent("m.cnx").path, dir.appendingPathComponent("hard.cnx").path), 0)
        try assertRefused(["m.cnx", "hard.cnx"], mentions: ["hard.cnx", "the input model"])
        XCTAssertEqual(link(dir.appendingPathComponent("digits.cnx").path, dir.appendingPathComponent("digits-link.cnx").path), 0)
        try assertRefused(
            ["quantize", "--int8", "digits.cnx", "digits-link.cnx", "--calibration", "calib.npy"], mentions: ["digits-link.cnx"])
    }

    func testQuantizeOverItsInputOrItsData() throws {
        try assertRefused(
            ["quantize", "--int8", "digits.cnx", "digits.cnx", "--calibration", "calib.npy"], mentions: ["digits.cnx", "the input model"])
        try assertRefused(
            ["quantize", "--int8", "digits.onnx", "calib.npy", "--calibration", "calib.npy", "--force"], mentions: ["calibration data"])
        try assertRefused(
            ["quantize", "--int8", "digits.onnx", "names.txt", "--calibration", "calib.npy", "--labels", "names.txt", "--force"],
            mentions: ["labels file"])
        try assertRefused(["convert", "--int8", "digits.onnx", "calib.npy", "--calibration", "calib.npy"], mentions: ["calib.npy"])
    }

    func testRunOutputOverTheModelOrTheInput() throws {
        // A model replaced by a small array, and the input batch replaced by the output.
        try assertRefused(["run", "m.cnx", "--input", "in.npy", "--output", "m.cnx"], mentions: ["m.cnx", "the input model"])
        try assertRefused(["run", "m.cnx", "--input", "in.npy", "--output", "in.npy"], mentions: ["in.npy", "--input batch"])
        try assertRefused(["run", "m.cnx", "--input", "in.npy", "--output", "./in.npy"], mentions: ["--input batch"])
        // Over another model it does not read: the content is not an array.
        try assertRefused(["run", "m.cnx", "--input", "in.npy", "--output", "existing.cnx"], mentions: ["existing.cnx"])
        try FileManager.default.copyItem(at: dir.appendingPathComponent("m.onnx"), to: dir.appendingPathComponent("model.npy"))
        try assertRefused(
            ["run", "m.cnx", "--input", "in.npy", "--output", "model.npy"], mentions: ["model.npy", "ONNX", "not a .npy array"])
        // An image given to run is an input too.
        try assertRefused(["run", "digits.cnx", "flower.png", "--output", "flower.png", "--force"], mentions: ["input image"])
    }

    func testExternalDataAndCheckpointConfigAreInputs() throws {
        try assertRefused(["dyn/model.onnx", "dyn/model.onnx.data", "--force"], mentions: ["dyn/model.onnx.data", "external data"])
        try assertRefused(
            ["run", "dyn/model.onnx", "--input", "dyn/input.npy", "--output", "dyn/model.onnx.data", "--force"],
            mentions: ["external data"])
        try assertRefused(["hub", "hub/config.json", "--force"], mentions: ["config.json"])
        try assertRefused(["hub", "hub/model.safetensors", "--force"], mentions: ["model.safetensors"])
    }

    func testMissingOutputFolderIsNamed() throws {
        try assertRefused(["m.onnx", "nodir/m.cnx"], mentions: ["nodir: no such folder"])
        try assertRefused(["run", "m.cnx", "--input", "in.npy", "--output", "nodir/y.npy"], mentions: ["nodir: no such folder"])
        try assertRefused(["m.onnx", "hub"], mentions: ["hub: is a folder"])
    }

    func testForceReplacesAnotherFormatAndACNXReplacesACNX() throws {
        try FileManager.default.copyItem(at: dir.appendingPathComponent("m.onnx"), to: dir.appendingPathComponent("old.cnx"))
        try assertRefused(["m.onnx", "old.cnx"], mentions: ["old.cnx", "not a .cnx model"])
        let forced = try runTool(["m.onnx", "old.cnx", "--force"], in: dir)
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertNoThrow(try CNXReader.load(path: dir.appendingPathComponent("old.cnx").path))
        // Replacing a .cnx with a .cnx is ordinary.
        let again = try runTool(["m.onnx", "existing.cnx"], in: dir)
        XCTAssertEqual(again.status, 0, again.stderr)
        let y = try runTool(["run", "m.cnx", "--input", "in.npy", "--output", "y.npy"], in: dir)
        XCTAssertEqual(y.status, 0, y.stderr)
        let y2 = try runTool(["run", "m.cnx", "--input", "in.npy", "--output", "y.npy"], in: dir)
        XCTAssertEqual(y2.status, 0, y2.stderr)
    }
}
