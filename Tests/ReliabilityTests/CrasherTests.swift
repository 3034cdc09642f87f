import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXRuntime
import CNXTestSupport
import XCTest

/// Every input a fuzz target (or a hostile test) once crashed on (Crashers/, see its README) is now
/// refused with one `CNXError`, through the entry point that target calls.
final class CrasherTests: HostileFileTestCase {
    static let crashers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Crashers")

    /// The corpus of one target; an empty one fails the test, which would otherwise pass having
    /// tested nothing.
    func inputs(_ target: String) throws -> [URL] {
        let folder = CrasherTests.crashers.appendingPathComponent(target)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
        guard !names.isEmpty else { throw CNXError("Crashers/\(target) holds no inputs") }
        return names.sorted().map { folder.appendingPathComponent($0) }
    }

    func expectCNXError(_ input: URL, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("\(input.lastPathComponent): accepted; a crasher should be refused")
        } catch let e as CNXError {
            XCTAssertFalse(e.message.contains("\n"), "\(input.lastPathComponent): \(e.message)")
        } catch {
            XCTFail("\(input.lastPathComponent): not a CNXError: \(error)")
        }
    }

    func testONNXCrashers() throws {
        for input in try inputs("onnx") {
            let path = try write([UInt8](try Data(contentsOf: input)), "model.onnx")
            expectCNXError(input) { _ = try ONNXReader.load(path: path) }
        }
    }

    func testNPYCrashers() throws {
        for input in try inputs("npy") {
            let path = try write([UInt8](try Data(contentsOf: input)), "input.npy")
            expectCNXError(input) { _ = try NPY.read(path: path) }
        }
    }

    /// As Fuzz/Sources/FuzzCNX does: an odd last byte asks for the header to be repaired.
    func testCNXCrashers() throws {
        for input in try inputs("cnx") {
            var bytes = [UInt8](try Data(contentsOf: input))
            let repair = bytes.last.map { $0 & 1 == 1 } ?? false
            if repair {
                bytes.removeLast()
                if bytes.count >= 96 {
                    let dataOffset = Int(truncatingIfNeeded: bytes.u64(at: 64))
                    if dataOffset >= 96 && dataOffset <= bytes.count {
                        bytes.put(UInt64(bytes.count - dataOffset), at: 72)
                        CNXLayoutWalker.reseal(&bytes)
                    }
                }
            }
            let path = try write(bytes, "model.cnx")
            expectCNXError(input) {
                if repair {
                    let file = try CNXReader.load(path: path, verify: false)
                    _ = try Model(graph: file.graph, metadata: file.metadata, threads: 1)
                } else {
                    _ = try Model(path: path, threads: 1)
                }
            }
        }
    }

    /// Checkpoints go through the tool (`inspect`, which calls `CheckpointReader.load` as the fuzz
    /// targets do) in a child process: a stack overflow there must not end this test process.
    func testCheckpointCrashers() throws {
        for target in ["pth", "safetensors"] {
            for input in try inputs(target) {
                let path = try write([UInt8](try Data(contentsOf: input)), "model.\(target)")
                let r = try runMeasured(["inspect", path])
                let name = "\(target)/\(input.lastPathComponent)"
                XCTAssertNil(r.signal, "\(name): killed by signal \(r.signal ?? 0)")
                guard r.signal == nil else { continue }
                XCTAssertEqual(r.status, 1, "\(name): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(name): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(path), "\(name): \(r.stderr)")
            }
        }
    }
}
