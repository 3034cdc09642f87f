import CNXGraph
import CNXIO
import CNXTestSupport
import XCTest

/// The built `convnext-convert` tool, run as a user runs it.
final class CLIRunTests: XCTestCase {
    func testRunMatchesONNXRuntimeOnEveryFixture() throws {
        let dir = try scratchDirectory()
        for entry in try Fixtures.manifest() {
            for (i, c) in entry.cases.enumerated() {
                let out = dir.appendingPathComponent("\(entry.name)-\(i).npy").path
                let r = try runTool(["run", entry.model, "--input", entry.path(c.input), "--output", out])
                XCTAssertEqual(r.status, 0, "\(entry.name): \(r.stderr)")
                let y = try NPY.read(path: out), expected = try NPY.read(path: entry.path(c.expected))
                XCTAssertEqual(y.shape, expected.shape)
                XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, entry.name)
                let cols = expected.shape.last ?? 1
                XCTAssertEqual(argmaxRows(y.floats, cols: cols), argmaxRows(expected.floats, cols: cols), entry.name)
            }
        }
    }

    func testInspectReportsArchitecture() throws {
        for entry in try Fixtures.manifest() {
            let r = try runTool(["inspect", entry.model])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(
                r.stdout.contains("depths:   " + entry.depths.map(String.init).joined(separator: ", ")), "\(entry.name)\n\(r.stdout)")
            XCTAssertTrue(r.stdout.contains("dims:     " + entry.dims.map(String.init).joined(separator: ", ")), entry.name)
            XCTAssertTrue(r.stdout.contains("classes:  \(entry.num_classes)"), "\(entry.name)\n\(r.stdout)")
            XCTAssertTrue(r.stdout.contains("opset:      \(entry.opset)"), "\(entry.name)\n\(r.stdout)")
            XCTAssertTrue(r.stdout.contains("Conv"), entry.name)
        }
    }

    func testInspectShowsSymbolicDims() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.dynamic_hw })
        let r = try runTool(["inspect", entry.model])
        XCTAssertEqual(r.status, 0)
        // A dynamic height and width are names, not numbers.
        let inputLine = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.contains("float32 [") })
        XCTAssertFalse(inputLine.contains(", 32, 32]"), String(inputLine))
    }

    func testMissingInputFileIsOneClearError() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first)
        let dir = try scratchDirectory()
        let out = dir.appendingPathComponent("y.npy").path
        let r = try runTool(["run", entry.model, "--input", "/nonexistent/x.npy", "--output", out])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent/x.npy"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}

/// Bad input through the command-line tool: one line on stderr naming the file, exit status 1.
final class CLIBadInputTests: XCTestCase {
    func check(_ arguments: [String], mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runTool(arguments)
        XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr, file: file, line: line)
        for m in mentions { XCTAssertTrue(r.stderr.contains(m), "'\(m)' not in \(r.stderr)", file: file, line: line) }
        XCTAssertTrue(r.stdout.isEmpty, r.stdout, file: file, line: line)
    }

    func testMalformedModels() throws {
        let dir = try scratchDirectory()
        let entries = try Fixtures.manifest()
        let legacy = try XCTUnwrap(entries.first { $0.exporter == "legacy" })
        let dynamo = try XCTUnwrap(entries.first { $0.exporter == "dynamo" })
        let bytes = try Data(contentsOf: URL(fileURLWithPath: legacy.model))
        let truncated = dir.appendingPathComponent("truncated.onnx").path
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let text = dir.appendingPathComponent("text.onnx").path
        try Data("hello, world\n".utf8).write(to: URL(fileURLWithPath: text))
        let lonely = dir.appendingPathComponent("lonely.onnx").path
        try FileManager.default.copyItem(atPath: dynamo.model, toPath: lonely)
        let out = dir.appendingPathComponent("y.npy").path
        let input = legacy.path(legacy.cases[0].input)
        for command in ["inspect", "run"] {
            func args(_ model: String) -> [String] {
                command == "inspect" ? [command, model] : [command, model, "--input", input, "--output", out]
            }
            try check(args(truncated), mentions: [truncated, "truncated", "byte"])
            try check(args(text), mentions: [text, "byte"])
            try check(args(lonely), mentions: [lonely, dir.appendingPathComponent("model.onnx.data").path])
            try check(args(dir.appendingPathComponent("absent.onnx").path), mentions: ["absent.onnx"])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testWrongInputShapeNamesTheInput() throws {
        let dir = try scratchDirectory()
        let entry = try XCTUnwrap(try Fixtures.manifest().first { !$0.dynamic_batch && !$0.dynamic_hw })
        let bad = dir.appendingPathComponent("bad.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [1, 3, 8, 8]), path: bad)
        try check(["run", entry.model, "--input", bad, "--output", dir.appendingPathComponent("y.npy").path], mentions: ["input"])
    }
}
