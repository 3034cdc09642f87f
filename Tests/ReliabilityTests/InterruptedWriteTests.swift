import CNXGraph
import CNXIO
import CNXTestSupport
import Foundation
import XCTest

/// SIGINT or SIGTERM in the middle of writing a .cnx leaves neither the output nor the
/// temporary file. The tool is stopped at a known point of the write by the test hook
/// `CNX_TEST_PAUSE_AT` (`InterruptCleanup.testPoint`; CNXWriter.write names `write.header` and
/// `write.tensor.N`): it says so on stderr and waits on stdin, and only then is it signalled, so
/// the outcome never depends on timing.
final class InterruptedWriteTests: XCTestCase {
    /// The tool converting the committed fixture into `dir`, stopped at `point`.
    struct Paused {
        let process: Process
        let stdin: Pipe
        let dir: URL
        let output: String
    }

    func startPaused(at point: String, in dir: URL) throws -> Paused {
        let converted = try ConvertedFixture.get()
        let output = dir.appendingPathComponent("model.cnx").path
        let process = Process()
        process.executableURL = Fixtures.tool
        process.arguments = [converted.entry.model, output]
        var environment = ProcessInfo.processInfo.environment
        environment["CNX_TEST_PAUSE_AT"] = point
        process.environment = environment
        let stdin = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = FileHandle.nullDevice
        process.standardError = stderr
        try process.run()
        // Blocks until the tool reports the pause, or exits (end of file) without reaching it.
        var said = ""
        while !said.contains("cnx-test: paused at \(point)\n") {
            let chunk = stderr.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            said += String(decoding: chunk, as: UTF8.self)
        }
        guard said.contains("cnx-test: paused at \(point)\n") else {
            process.waitUntilExit()
            throw CNXError("the tool never reached \(point) (exit \(process.terminationStatus)): \(said)")
        }
        return Paused(process: process, stdin: stdin, dir: dir, output: output)
    }

    /// The temporary file of the write in progress (convert first writes a hidden staging copy
    /// to check, through the same writer).
    func temporaryFile(_ p: Paused) throws -> (name: String, size: Int) {
        let names = try FileManager.default.contentsOfDirectory(atPath: p.dir.path)
        let name = try XCTUnwrap(names.first { $0.hasSuffix(".tmp") }, "no temporary file while paused: \(names)")
        let size = try FileManager.default.attributesOfItem(atPath: p.dir.appendingPathComponent(name).path)[.size] as? Int ?? 0
        return (name, size)
    }

    func interrupt(with signal: Int32, at point: String) throws {
        let dir = try scratchDirectory()
        let paused = try startPaused(at: point, in: dir)
        let temporary = try temporaryFile(paused)
        XCTAssertTrue(temporary.name.hasPrefix(".") && temporary.name.contains("model.cnx."), temporary.name)
        XCTAssertGreaterThanOrEqual(temporary.size, 96, "at \(point) the header is in the temporary file")
        XCTAssertTrue(paused.process.isRunning)
        kill(paused.process.processIdentifier, signal)
        paused.process.waitUntilExit()

        XCTAssertEqual(
            paused.process.terminationReason, .uncaughtSignal, "the tool should die of the signal, as it would without a handler")
        XCTAssertEqual(paused.process.terminationStatus, signal)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(left, [], "files left behind after signal \(signal) at \(point)")
    }

    func testSIGINTAfterTheHeaderLeavesNothing() throws { try interrupt(with: SIGINT, at: "write.header") }

    func testSIGINTBetweenTensorsLeavesNothing() throws { try interrupt(with: SIGINT, at: "write.tensor.2") }

    func testSIGTERMBetweenTensorsLeavesNothing() throws { try interrupt(with: SIGTERM, at: "write.tensor.2") }

    /// The control: SIGKILL cannot be handled, so the temporary file stays (hidden, `.tmp`, and
    /// never renamed into place). It shows this test sees a file left behind when there is one.
    func testSIGKILLLeavesOnlyTheHiddenTemporaryFile() throws {
        let dir = try scratchDirectory()
        let paused = try startPaused(at: "write.tensor.2", in: dir)
        let temporary = try temporaryFile(paused)
        kill(paused.process.processIdentifier, SIGKILL)
        paused.process.waitUntilExit()
        XCTAssertEqual(paused.process.terminationStatus, SIGKILL)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [temporary.name])
    }

    /// Released without a signal, the paused write finishes: the same file as an ordinary
    /// conversion, and nothing else is left.
    func testAPausedWriteResumesToTheSameFile() throws {
        let converted = try ConvertedFixture.get()
        let dir = try scratchDirectory()
        let paused = try startPaused(at: "write.tensor.0", in: dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: paused.output), "the output appears only when the write is done")
        paused.stdin.fileHandleForWriting.write(Data([0x0A]))
        paused.process.waitUntilExit()
        XCTAssertEqual(paused.process.terminationReason, .exit)
        XCTAssertEqual(paused.process.terminationStatus, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: paused.output)), try Data(contentsOf: URL(fileURLWithPath: converted.cnx)))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.cnx"])
    }

    /// Registrations are given back: many more writes than the table's capacity all get a slot.
    func testRegistrationsAreReleased() throws {
        for i in 0..<(InterruptCleanup.capacity * 4) {
            let token = InterruptCleanup.register("/nonexistent/cnx-\(i).tmp")
            XCTAssertNotNil(token, "registration \(i)")
            InterruptCleanup.unregister(token)
        }
    }
}
