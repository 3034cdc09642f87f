import CNXGraph
import CNXIO
import CNXTestSupport
import XCTest

/// Damaged and malicious .npy inputs to `run`: one error naming the file, exit status 1, no
/// output, and no allocation beyond what the file holds.
final class HostileNPYTests: HostileFileTestCase {
    func load(_ path: String) throws -> Any { try NPY.read(path: path) }

    /// A version 1.0 .npy with `header` (padded as numpy does) and `payload` after it.
    func npy(_ header: String, payload: [UInt8] = [], major: UInt8 = 1) -> [UInt8] {
        var text = header
        let prefix = major == 1 ? 10 : 12
        text += String(repeating: " ", count: (64 - (prefix + text.utf8.count + 1) % 64) % 64) + "\n"
        let n = text.utf8.count
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
        bytes += major == 1 ? [UInt8(n & 0xff), UInt8(n >> 8)] : [UInt8(n & 0xff), UInt8(n >> 8 & 0xff), 0, 0]
        return bytes + Array(text.utf8) + payload
    }

    /// `run MODEL --input FILE --output out.npy` must fail with one line naming FILE.
    func assertRunRejects(_ path: String, mentioning parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try ConvertedFixture.get().cnx
        let out = dir.appendingPathComponent("out.npy").path
        let r = try runMeasured(["run", model, "--input", path, "--output", out])
        XCTAssertNil(r.signal, "killed by signal \(r.signal ?? 0)", file: file, line: line)
        XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(path), r.stderr, file: file, line: line)
        for p in parts { XCTAssertTrue(r.stderr.contains(p), "'\(p)' not in: \(r.stderr)", file: file, line: line) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "an output file was written", file: file, line: line)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        // The model itself takes memory too: a few MB for the small fixture.
        if let peak = r.peakRSS {
            XCTAssertLessThan(peak, rssBudget(fileSize: size) + 50_000_000, "peak RSS \(peak / 1_000_000) MB", file: file, line: line)
        }
    }

    func testTruncatedAtEveryBoundary() throws {
        let good = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }", payload: [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(try NPY.read(path: try write(good, "good.npy")).shape, [1, 4])
        // Magic, version, header length, header, each element of the payload.
        let headerEnd = good.count - 16
        for cut in [0, 3, 6, 8, 9, 10, headerEnd / 2, headerEnd - 1, headerEnd, headerEnd + 4, headerEnd + 15] {
            assertRejected(try write(Array(good[..<cut]), "cut-\(cut).npy"), load)
        }
        try assertRunRejects(try write(Array(good[..<(headerEnd + 5)]), "cli-cut.npy"), mentioning: ["truncated", "byte"])
    }

    func testHostileHeaders() throws {
        let cases: [(String, [UInt8], [String])] = [
            ("overflow", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }"), ["overflows"]),
            ("overflow-bytes", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2147483648, 2147483648), }"), ["truncated"]),
            ("negative", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }"), ["invalid shape"]),
            (
                "trillion",
                npy(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                    payload: [UInt8](repeating: 0, count: 16)), ["truncated", "4000000000000"]
            ),
            (
                "header-length", [0x93] + Array("NUMPY".utf8) + [2, 0, 0xff, 0xff, 0xff, 0x7f] + Array("{'descr'".utf8),
                ["truncated", "byte 12"]
            ),
            ("version", npy("{'descr': '<f4', 'shape': (1,), }", major: 9), ["version 9"]),
            ("dtype", npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", payload: [0, 0, 0, 0, 0, 0, 0, 0]), ["dtype"]),
            ("no-shape", npy("{'descr': '<f4', 'fortran_order': False, }"), ["shape"]),
            ("garbage", Array("not numpy at all".utf8), ["magic"]),
        ]
        for (name, bytes, parts) in cases {
            let path = try write(bytes, "\(name).npy")
            assertRejected(path, mentioning: parts, load)
            try assertRunRejects(path, mentioning: parts)
        }
    }

    func testBitFlipsNeverCrash() throws {
        let good = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", payload: [UInt8](repeating: 1, count: 32))
        for offset in 0..<good.count {
            for bit in [0, 3, 6, 7] {
                var b = good
                b[offset] ^= 1 << UInt8(bit)
                let path = try write(b, "flip.npy")
                do { _ = try NPY.read(path: path) } catch let e as CNXError {
                    XCTAssertTrue(e.message.hasPrefix(path) && !e.message.contains("\n"), e.message)
                }
            }
        }
    }
}
