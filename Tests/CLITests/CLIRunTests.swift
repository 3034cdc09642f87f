import CNXGraph
import CNXTestSupport
import XCTest

/// The built `convnext-convert` tool, run as a user runs it.
final class CLIRunTests: XCTestCase {
    func testRunMatchesONNXRuntimeOnEveryFixture() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
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
            XCTAssertTrue(r.stdout.contains("depths:   " + entry.depths.map(String.init).joined(separator: ", ")), "\(entry.name)\n\(r.stdout)")
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
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("y.npy").path
        let r = try runTool(["run", entry.model, "--input", "/nonexistent/x.npy", "--output", out])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/nonexistent/x.npy"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
