import CNXFormat
import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// A failed write leaves nothing at the output path (or the file that was there), and no
/// temporary file behind.
final class AtomicWriteTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func contents(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
    }

    /// A model whose one tensor is `megabytes` MB, big enough that writing it takes many syscalls.
    func bigModel(megabytes: Int) -> CNXModel {
        var model = tinyModel()
        model.graph.initializers["big"] = Tensor(zeros: .float32, shape: [megabytes, 1 << 18])
        return model
    }

    func testMissingDirectoryFailsCleanly() throws {
        let path = dir.appendingPathComponent("absent/model.cnx").path
        let e = cnxError("missing directory") { try CNXWriter.write(tinyModel(), to: path) }
        XCTAssertTrue(e?.message.hasPrefix("\(path): ") ?? false, e?.message ?? "")
        XCTAssertTrue(e?.message.contains("does not exist") ?? false, e?.message ?? "")
        XCTAssertEqual(try contents(dir), [])
    }

    func testRenameFailureRemovesTheTemporaryFile() throws {
        // The output path is a non-empty directory: everything is written, then the rename fails.
        let path = dir.appendingPathComponent("model.cnx")
        try FileManager.default.createDirectory(at: path, withIntermediateDirectories: false)
        try Data([1]).write(to: path.appendingPathComponent("keep"))
        let e = cnxError("rename over a directory") { try CNXWriter.write(tinyModel(), to: path.path) }
        XCTAssertTrue(e?.message.contains("rename") ?? false, e?.message ?? "")
        XCTAssertEqual(try contents(dir), ["model.cnx"])
        XCTAssertEqual(try contents(path), ["keep"])
    }

    func testFailureMidwayLeavesNothing() throws {
        let path = dir.appendingPathComponent("model.cnx").path
        // The existing file survives a failed overwrite untouched.
        try CNXWriter.write(tinyModel(), to: path)
        let before = try readBytes(path)
        let e = try withFileSizeLimit(1 << 20) {
            cnxError("write past the file size limit") { try CNXWriter.write(bigModel(megabytes: 8), to: path) }
        }
        XCTAssertTrue(e?.message.contains("tensor 'big'") ?? false, e?.message ?? "")
        XCTAssertEqual(try contents(dir), ["model.cnx"])
        XCTAssertTrue(before == (try readBytes(path)))

        // And with no file there before, nothing is there after.
        try FileManager.default.removeItem(atPath: path)
        _ = try withFileSizeLimit(1 << 20) {
            cnxError("write past the file size limit") { try CNXWriter.write(bigModel(megabytes: 8), to: path) }
        }
        XCTAssertEqual(try contents(dir), [])
    }

    func testInvalidTensorFailsBeforeAFileExists() throws {
        var model = tinyModel()
        var t = Tensor(floats: [1, 2, 3, 4], shape: [4])
        t.shape = [4, 1000]  // more than its storage holds
        model.graph.initializers["broken"] = t
        let path = dir.appendingPathComponent("model.cnx").path
        let e = cnxError("tensor larger than its storage") { try CNXWriter.write(model, to: path) }
        XCTAssertTrue(
            e?.message.hasPrefix("\(path): tensor 'broken': shape [4, 1000] of float32 needs 16000 bytes") ?? false,
            e?.message ?? "")
        XCTAssertEqual(try contents(dir), [])
    }

    func testLargeModelStreamsAndLoads() throws {
        let path = dir.appendingPathComponent("big.cnx").path
        let model = bigModel(megabytes: 16)
        model.graph.initializers["big"]?.withUnsafeMutableFloats { p in
            for i in stride(from: 0, to: 16 << 18, by: 4099) { p[i] = Float(i) }
        }
        try CNXWriter.write(model, to: path)
        XCTAssertEqual(try contents(dir), ["big.cnx"])
        let loaded = try CNXReader.load(path: path)
        assertModelsEqual(model, loaded, "big")
    }

    /// Runs `body` with writes limited to `bytes` per file; SIGXFSZ is ignored so that an
    /// over-long write fails with EFBIG instead of ending the process.
    func withFileSizeLimit<T>(_ bytes: Int, _ body: () throws -> T) throws -> T {
        var old = rlimit()
        #if os(Linux)
            let resource = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
        #else
            let resource = RLIMIT_FSIZE
        #endif
        guard getrlimit(resource, &old) == 0 else { throw XCTSkip("getrlimit failed") }
        var limited = old
        limited.rlim_cur = rlim_t(bytes)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        guard setrlimit(resource, &limited) == 0 else {
            signal(SIGXFSZ, oldHandler)
            throw XCTSkip("setrlimit failed")
        }
        defer {
            setrlimit(resource, &old)
            signal(SIGXFSZ, oldHandler)
        }
        return try body()
    }
}
