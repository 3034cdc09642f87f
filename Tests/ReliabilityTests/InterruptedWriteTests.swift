import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// SIGINT or SIGTERM in the middle of writing a .cnx leaves neither the output nor the
/// temporary file. The writer's test hook `CNX_TEST_WRITE_DELAY_MS` (CNXWriter.write) sleeps
/// before each tensor, so that a committed fixture takes long enough to write to be interrupted.
final class InterruptedWriteTests: XCTestCase {
    /// The committed fixture with the most bytes (the most tensors to write).
    func largestFixture() throws -> Fixtures.Entry {
        let entries = try Fixtures.manifest()
        let sized = try entries.map { e -> (Fixtures.Entry, Int) in
            let files = try FileManager.default.contentsOfDirectory(atPath: e.directory.path).filter { $0.hasPrefix("model.onnx") }
            let size = try files.reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: e.path($1))[.size] as? Int ?? 0) }
            return (e, size)
        }
        return try XCTUnwrap(sized.max { $0.1 < $1.1 }?.0)
    }

    func interrupt(with signal: Int32) throws {
        let entry = try largestFixture()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("model.cnx").path

        let process = Process()
        process.executableURL = Fixtures.tool
        process.arguments = [entry.model, output]
        var environment = ProcessInfo.processInfo.environment
        environment["CNX_TEST_WRITE_DELAY_MS"] = "50"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()

        // Wait for the temporary file, then for a few tensors to be written into it.
        let deadline = Date().addingTimeInterval(120)
        var temporary: String?
        while temporary == nil, process.isRunning, Date() < deadline {
            temporary = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.first { $0.hasSuffix(".tmp") }
            if temporary == nil { usleep(2_000) }
        }
        guard let temporary else {
            process.terminate()
            process.waitUntilExit()
            return XCTFail("no temporary file appeared (the tool exited with \(process.terminationStatus))")
        }
        // The writer's temporary file (convert may first write a hidden staging copy to check).
        XCTAssertTrue(temporary.hasPrefix(".") && temporary.contains("model.cnx."), temporary)
        usleep(200_000)
        XCTAssertTrue(process.isRunning, "the write finished before the signal; raise CNX_TEST_WRITE_DELAY_MS")
        kill(process.processIdentifier, signal)
        process.waitUntilExit()

        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the tool should die of the signal, as it would without a handler")
        XCTAssertEqual(process.terminationStatus, signal)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(left, [], "files left behind after signal \(signal)")
    }

    func testSIGINTDuringAWriteLeavesNothing() throws { try interrupt(with: SIGINT) }

    func testSIGTERMDuringAWriteLeavesNothing() throws { try interrupt(with: SIGTERM) }

    /// Registrations are given back: many more writes than the table's capacity all get a slot.
    func testRegistrationsAreReleased() throws {
        for i in 0..<(InterruptCleanup.capacity * 4) {
            let token = InterruptCleanup.register("/nonexistent/cnx-\(i).tmp")
            XCTAssertNotNil(token, "registration \(i)")
            InterruptCleanup.unregister(token)
        }
    }

    /// Without a signal, the hook only slows the write: the file is whole and nothing else is left.
    func testTheDelayHookWritesTheSameFile() throws {
        let converted = try ConvertedFixture.get()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("slow.cnx").path
        let process = Process()
        process.executableURL = Fixtures.tool
        process.arguments = [converted.entry.model, output]
        var environment = ProcessInfo.processInfo.environment
        environment["CNX_TEST_WRITE_DELAY_MS"] = "1"
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: output)), try Data(contentsOf: URL(fileURLWithPath: converted.cnx)))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["slow.cnx"])
    }
}
