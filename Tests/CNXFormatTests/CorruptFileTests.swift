import CNXFormat
import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// Damaged, truncated and foreign files give a CNXError that says what is wrong and where; none
/// crashes the reader.
final class CorruptFileTests: XCTestCase {
    var dir: URL!
    var good: [UInt8] = []

    override func setUpWithError() throws {
        dir = try temporaryDirectory()
        good = [UInt8](try CNXWriter.encode(tinyModel()))
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Writes `bytes` and loads them; returns the error message, or nil when the load succeeded.
    func load(_ bytes: [UInt8], verify: Bool = true, name: String = "model.cnx") throws -> String? {
        let path = dir.appendingPathComponent(name).path
        try writeBytes(bytes, path)
        do {
            _ = try CNXReader.load(path: path, verify: verify)
            return nil
        } catch let e as CNXError {
            XCTAssertTrue(e.message.hasPrefix(path + ": "), "the message does not start with the file: \(e.message)")
            return e.message
        }
    }

    func testFlippedTensorByteIsReportedWithTheTensorName() throws {
        let locations = try tensorLocations(good)
        XCTAssertEqual(locations.map(\.name), ["head.bias", "head.weight", "stem.weight"])
        for t in locations {
            for position in [t.range.lowerBound, t.range.upperBound - 1] {
                var bytes = good
                bytes[position] ^= 0x10
                let message = try XCTUnwrap(try load(bytes), "\(t.name) byte \(position)")
                XCTAssertTrue(message.contains("checksum"), message)
                XCTAssertTrue(message.contains("tensor '\(t.name)'"), message)
                XCTAssertTrue(message.contains("bytes \(t.range.lowerBound)..<\(t.range.upperBound)"), message)
                // Without verification the damage goes unnoticed, by design.
                XCTAssertNil(try load(bytes, verify: false))
            }
        }
    }

    func testFlippedHeaderByteIsReportedAsAHeaderChecksumMismatch() throws {
        let h = try FixedHeader(good)
        // Every byte of the sections and the padding: the checksum is the only thing that can tell.
        for position in h.metadata.offset..<h.dataOffset {
            var bytes = good
            bytes[position] ^= 0x01
            let message = try XCTUnwrap(try load(bytes), "byte \(position)")
            XCTAssertTrue(message.contains("checksum") && message.contains("header"), "byte \(position): \(message)")
        }
        // The checksum field itself, and the reserved bytes of the fixed header.
        for position in [8, 11, 12, 80, 95] {
            var bytes = good
            bytes[position] ^= 0x80
            let message = try XCTUnwrap(try load(bytes), "byte \(position)")
            XCTAssertTrue(message.contains("header checksum mismatch"), "byte \(position): \(message)")
        }
    }

    func testTruncationAtEveryLengthGivesAClearError() throws {
        for length in 0..<good.count {
            let message = try XCTUnwrap(try load(Array(good[0..<length])), "cut at \(length)")
            let expected = length < 4 ? "not a .cnx file" : "truncated"
            XCTAssertTrue(message.contains(expected), "cut at \(length): \(message)")
        }
        XCTAssertNil(try load(good))
    }

    func testTruncatedLargeFileNamesTheSizes() throws {
        let path = dir.appendingPathComponent("big.cnx").path
        let entry = try XCTUnwrap(Fixtures.manifest().first)
        try CNXWriter.write(CNXModel(graph: try ONNXReader.load(path: entry.model)), to: path)
        let bytes = try readBytes(path)
        let message = try XCTUnwrap(try load(Array(bytes.dropLast(1000))))
        XCTAssertTrue(message.contains("truncated"), message)
        XCTAssertTrue(message.contains("says the file is \(bytes.count) bytes"), message)
        XCTAssertTrue(message.contains("it has \(bytes.count - 1000)"), message)
    }

    func testTrailingBytesAreReported() throws {
        let message = try XCTUnwrap(try load(good + [0, 0, 0]))
        XCTAssertTrue(message.contains("3 unexpected bytes after the data section"), message)
    }

    func testBadMagicIsNotACNXFile() throws {
        let onnx = try readBytes(try XCTUnwrap(Fixtures.manifest().first).model)
        for bytes in [onnx, [], Array("CNX".utf8), Array("CNX1".utf8) + Array(good[4...])] {
            let message = try XCTUnwrap(try load(bytes))
            XCTAssertTrue(message.contains("not a .cnx file"), message)
        }
        let message = try XCTUnwrap(try load(onnx))
        XCTAssertTrue(message.contains("bytes 0..<4 are"), message)
    }

    func testMissingFileNamesThePath() throws {
        let path = dir.appendingPathComponent("absent.cnx").path
        let e = cnxError("missing file") { _ = try CNXReader.load(path: path) }
        XCTAssertTrue(e?.message.hasPrefix(path) ?? false, e?.message ?? "")
    }

    func testNewerMajorVersionIsRefused() throws {
        var bytes = good
        setU16(&bytes, at: 4, 2)
        try fixHeaderCRC(&bytes)
        let message = try XCTUnwrap(try load(bytes))
        XCTAssertTrue(message.hasSuffix(": written by a newer convnext-convert (format 2.2); this reader understands 1.x"), message)
        // Refused even when the rest of the header means something else in that version.
        let message2 = try XCTUnwrap(try load(Array(bytes[0..<8])))
        XCTAssertTrue(message2.contains("format 2.2"), message2)

        setU16(&bytes, at: 4, 0)
        try fixHeaderCRC(&bytes)
        let message3 = try XCTUnwrap(try load(bytes))
        XCTAssertTrue(message3.contains("format version 0.2"), message3)
    }

    func testNewerMinorVersionIsAccepted() throws {
        var bytes = good
        setU16(&bytes, at: 6, 7)
        try fixHeaderCRC(&bytes)
        XCTAssertNil(try load(bytes))
        let loaded = try CNXReader.load(path: dir.appendingPathComponent("model.cnx").path)
        assertModelsEqual(tinyModel(), loaded, "minor 7")
    }

    func testNewerMinorMayAddFieldsAtTheEndOfASection() throws {
        // Grow the tensor table into the zero padding before the data: a 1.3 writer's new field.
        let h = try FixedHeader(good)
        let tableEnd = h.tensors.offset + h.tensors.size
        let extra = h.dataOffset - tableEnd
        try XCTSkipIf(extra == 0, "tiny.cnx has no padding before its data")
        var bytes = good
        setU64(&bytes, at: 56, UInt64(h.tensors.size + extra))
        try fixHeaderCRC(&bytes)
        let message = try XCTUnwrap(try load(bytes))
        XCTAssertTrue(message.contains("tensor table: \(extra) bytes left over at byte \(tableEnd)"), message)
        setU16(&bytes, at: 6, 3)
        try fixHeaderCRC(&bytes)
        XCTAssertNil(try load(bytes))
    }

    func testTensorRunningPastTheEndNamesTheTensorAndBytes() throws {
        let locations = try tensorLocations(good)
        let t = try XCTUnwrap(locations.last)
        var bytes = good
        let h = try FixedHeader(good)
        setU64(&bytes, at: t.offsetField, UInt64(h.dataSize / 64 * 64 + 64))
        try fixHeaderCRC(&bytes)
        let message = try XCTUnwrap(try load(bytes))
        let start = h.dataOffset + h.dataSize / 64 * 64 + 64
        XCTAssertTrue(
            message.hasSuffix(
                "model.cnx: tensor '\(t.name)': data at bytes \(start)..<\(start + t.range.count) runs past the end of the \(good.count)-byte file"
            ), message)
    }

    func testMisalignedTensorOffsetIsRefused() throws {
        let t = try XCTUnwrap(try tensorLocations(good).first)
        var bytes = good
        setU64(&bytes, at: t.offsetField, 8)
        try fixHeaderCRC(&bytes)
        let message = try XCTUnwrap(try load(bytes))
        XCTAssertTrue(message.contains("tensor '\(t.name)': data offset 8 at byte \(t.offsetField) is not a multiple of 64"), message)
    }

    func testHugeCountsAreRefusedBeforeAllocating() throws {
        let h = try FixedHeader(good)
        for (offset, section) in [
            (h.metadata.offset, "metadata section"), (h.graph.offset, "graph section"), (h.tensors.offset, "tensor table"),
        ] {
            var bytes = good
            setU64(&bytes, at: offset, UInt64.max / 2)
            try fixHeaderCRC(&bytes)
            let message = try XCTUnwrap(try load(bytes))
            XCTAssertTrue(message.contains("\(section): ") && message.contains("cannot fit"), message)
        }
    }

    /// Every byte of the header set to several values, with the checksum made to match, so the
    /// parser itself meets the damage: it must throw a CNXError or load, never trap.
    func testDamagedHeaderWithAMatchingChecksumNeverCrashes() throws {
        let h = try FixedHeader(good)
        var loaded = 0, refused = 0
        for position in 0..<h.dataOffset where !(8..<12).contains(position) {
            for value in Set([0x00, 0xFF, good[position] ^ 0x01, good[position] ^ 0x80, good[position] &+ 64]) {
                var bytes = good
                bytes[position] = value
                // A damaged field may make the checksum's range unreadable; then the damage stays visible.
                if position >= 12 { try? fixHeaderCRC(&bytes) }
                if try load(bytes) == nil { loaded += 1 } else { refused += 1 }
            }
        }
        XCTAssertGreaterThan(refused, 0)
        XCTAssertGreaterThan(loaded, 0, "changing a name or a value should still load")
    }

    /// Several header bytes changed at once, at random (a fixed seed, so a failure repeats).
    func testRandomHeaderDamageWithAMatchingChecksumNeverCrashes() throws {
        let h = try FixedHeader(good)
        var rng = SplitMix64(seed: 0xC0FFEE)
        for _ in 0..<2000 {
            var bytes = good
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let position = 12 + Int(rng.next() % UInt64(h.dataOffset - 12))
                bytes[position] = UInt8(truncatingIfNeeded: rng.next())
            }
            try? fixHeaderCRC(&bytes)
            _ = try load(bytes)
        }
    }
}

/// A small deterministic random number generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
