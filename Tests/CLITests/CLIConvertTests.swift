import CNXFormat
import CNXGraph
import CNXIO
import CNXTestSupport
import XCTest

/// `convnext-convert IN OUT`, then `run` on the `.cnx`, against ONNX Runtime.
final class CLIConvertTests: XCTestCase {
    func testEveryFixtureConvertsAndMatchesONNXRuntime() throws {
        let dir = try scratchDirectory()
        for entry in try Fixtures.manifest() {
            let cnx = dir.appendingPathComponent("\(entry.name).cnx").path
            let r = try runTool([entry.model, cnx])
            XCTAssertEqual(r.status, 0, "\(entry.name): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("verified:"), r.stdout)
            for (i, c) in entry.cases.enumerated() {
                let out = dir.appendingPathComponent("\(entry.name)-\(i).npy").path
                let run = try runTool(["run", cnx, "--input", entry.path(c.input), "--output", out])
                XCTAssertEqual(run.status, 0, "\(entry.name): \(run.stderr)")
                let y = try NPY.read(path: out), expected = try NPY.read(path: entry.path(c.expected))
                XCTAssertEqual(y.shape, expected.shape, entry.name)
                XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, "\(entry.name) case \(i)")
                let cols = expected.shape.last ?? 1
                XCTAssertEqual(argmaxRows(y.floats, cols: cols), argmaxRows(expected.floats, cols: cols), "\(entry.name) top-1")
            }
        }
    }

    func testConvertIsDeterministicAndTheDefaultSubcommand() throws {
        let dir = try scratchDirectory()
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "dynamo" })
        let a = dir.appendingPathComponent("a.cnx").path, b = dir.appendingPathComponent("b.cnx").path
        XCTAssertEqual(try runTool([entry.model, a]).status, 0)
        XCTAssertEqual(try runTool(["convert", entry.model, b]).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a)), try Data(contentsOf: URL(fileURLWithPath: b)))
        let contents = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(Set(contents), ["a.cnx", "b.cnx"], "no temporary files are left behind")
    }

    func testCNXMetadataAndInspect() throws {
        let dir = try scratchDirectory()
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == "timm_linear_op17" })
        let cnx = dir.appendingPathComponent("m.cnx").path
        XCTAssertEqual(try runTool([entry.model, cnx]).status, 0)
        let file = try CNXReader.load(path: cnx)
        XCTAssertEqual(file.metadata[MetadataKey.depths], .ints(entry.depths.map(Int64.init)))
        XCTAssertEqual(file.metadata[MetadataKey.dims], .ints(entry.dims.map(Int64.init)))
        XCTAssertEqual(file.metadata[MetadataKey.classes], .int(Int64(entry.num_classes)))
        XCTAssertEqual(file.metadata[MetadataKey.sourceFileName], .string("model.onnx"))
        if case .string(let sha)? = file.metadata[MetadataKey.sourceSHA256] { XCTAssertEqual(sha.count, 64) } else { XCTFail("no sha256") }
        if case .strings(let passes)? = file.metadata[MetadataKey.converterPasses] {
            XCTAssertTrue(passes.contains("fuse-blocks"))
        } else {
            XCTFail("no passes")
        }
        let inspect = try runTool(["inspect", cnx])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        for s in ["format:     cnx", "convnext.depths", "cnx.Block", "tensors ("] { XCTAssertTrue(inspect.stdout.contains(s), s) }
    }

    func testVerboseAndDumpAfter() throws {
        let dir = try scratchDirectory()
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == "timm_linear_op13" })
        let r = try runTool([entry.model, dir.appendingPathComponent("m.cnx").path, "--verbose", "--dump-after", "fold-gelu"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("fold-layernorm") && r.stderr.contains("rewrites"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--- graph after fold-gelu ---") && r.stderr.contains("= Gelu("), r.stderr)
        let bad = try runTool([entry.model, dir.appendingPathComponent("n.cnx").path, "--dump-after", "no-such-pass"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("n.cnx").path))
        // The error lists the passes as the help does: each once (eliminate-transposes runs twice).
        XCTAssertTrue(bad.stderr.contains("no pass is called 'no-such-pass'") && bad.stderr.contains("fold-gelu"), bad.stderr)
        XCTAssertEqual(bad.stderr.components(separatedBy: "eliminate-transposes").count, 2, bad.stderr)
    }

    func testBenchPrintsJSON() throws {
        let dir = try scratchDirectory()
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == "timm_linear_dynamo" })
        let cnx = dir.appendingPathComponent("m.cnx").path
        XCTAssertEqual(try runTool([entry.model, cnx]).status, 0)
        let r = try runTool(["bench", cnx, "--threads", "2", "--batch", "2", "--iterations", "3", "--size", "64", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        for key in ["median_ms", "p90_ms", "throughput_ips", "peak_rss_mb"] { XCTAssertNotNil(object?[key], key) }
    }
}

/// The source fingerprint in a `.cnx` is the file's real SHA-256, as coreutils computes it.
final class SourceDigestTests: XCTestCase {
    func testSHA256MatchesCoreutils() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "legacy" })
        let dir = try scratchDirectory()
        let cnx = dir.appendingPathComponent("m.cnx").path
        XCTAssertEqual(try runTool([entry.model, cnx]).status, 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [entry.model]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let expected = String(text.prefix(64))
        XCTAssertEqual(try CNXReader.load(path: cnx).metadata[MetadataKey.sourceSHA256], .string(expected))
    }
}
