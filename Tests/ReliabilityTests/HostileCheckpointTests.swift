import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// Damaged and malicious PyTorch checkpoints (.pth zip archives with a pickle) and .safetensors
/// files, through the readers (issues #5 and #6) and through the tool.
final class HostileCheckpointTests: HostileFileTestCase {
    /// A committed checkpoint fixture, or a skip when the checkpoints are not there.
    func checkpoint(_ file: String) throws -> [UInt8] {
        let url = Fixtures.root.appendingPathComponent("Fixtures/checkpoints/isotropic/\(file)")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: url.path), "no \(url.path)")
        return [UInt8](try Data(contentsOf: url))
    }

    func loadPTH(_ path: String) throws -> Any { try TorchCheckpoint.load(path: path) }
    func loadSafetensors(_ path: String) throws -> Any { try SafetensorsReader.load(path: path) }

    // MARK: .pth

    /// Cut at every local header, every entry's data start and end, every directory entry and
    /// the end record.
    func testPTHTruncatedAtEveryZipBoundary() throws {
        let bytes = try checkpoint("model.pth")
        let (_, boundaries) = try XCTUnwrap(ZipTools.read(bytes))
        let cuts = Set(boundaries + [1, bytes.count - 1]).filter { $0 < bytes.count }.sorted()
        XCTAssertGreaterThan(cuts.count, 20)
        for cut in cuts {
            assertRejected(try write(Array(bytes[..<cut]), "cut-\(cut).pth"), loadPTH)
        }
        for cut in [cuts[cuts.count / 2], bytes.count - 1] {
            try assertRejectedByCLI(try write(Array(bytes[..<cut]), "cli-cut-\(cut).pth"))
        }
    }

    /// One bit flipped in every byte of the pickle and of the zip structures (entry data other
    /// than the pickle is weights, where a flip changes a number and nothing else).
    func testPTHBitFlipsNeverCrash() throws {
        let bytes = try checkpoint("model.pth")
        let (entries, boundaries) = try XCTUnwrap(ZipTools.read(bytes))
        let pickleSize = try XCTUnwrap(entries.first { $0.name.hasSuffix("data.pkl") }).data.count
        var offsets = Set(0..<min(bytes.count, 30 + 64 + pickleSize))
        offsets.formUnion((boundaries.first { $0 > bytes.count - 2000 } ?? 0)..<bytes.count)
        for offset in offsets.sorted() {
            var b = bytes
            b[offset] ^= 1 << UInt8(offset % 8)
            let path = try write(b, "flip.pth")
            do { _ = try CheckpointReader.load(path: path, kind: .pth) } catch let e as CNXError {
                XCTAssertFalse(e.message.contains("\n"), "flip at \(offset): \(e.message)")
            }
        }
    }

    /// Zip bombs: an entry claiming to inflate 114 bytes to 2 GB; two directory entries over the
    /// same bytes; and a storage entry that honestly inflates to more than the tool's whole memory
    /// budget behind a tensor that needs a few KB of it. None may cost more memory than the file.
    func testZipBombs() throws {
        let bytes = try checkpoint("model.pth")
        let (entries, _) = try XCTUnwrap(ZipTools.read(bytes))
        let storage = try XCTUnwrap(entries.firstIndex { $0.name.hasSuffix("/data/0") })

        var claims = entries
        claims[storage].method = 8
        claims[storage].data = ZipTools.deflatedZeros(100_000)
        claims[storage].uncompressedSize = 1 << 31
        let p1 = try write(ZipTools.write(claims), "claims.pth")
        assertRejected(p1, mentioning: ["zip bomb"], loadPTH)
        try assertRejectedByCLI(p1, mentioning: ["zip bomb"])

        var overlap = ZipTools.write(entries)
        let (_, layout) = try XCTUnwrap(ZipTools.read(overlap))
        // Point the second directory entry at the first entry's local header.
        let directory = ZipTools.u32(overlap, overlap.count - 22 + 16)
        let second = directory + 46 + ZipTools.u16(overlap, directory + 28)
        XCTAssertTrue(layout.contains(second))
        overlap.replaceSubrange((second + 42)..<(second + 46), with: [0, 0, 0, 0])
        let p2 = try write(overlap, "overlap.pth")
        assertRejected(p2, loadPTH)
        try assertRejectedByCLI(p2)

        // Honest, and within deflate's ratio: the inflated size is what the file implies. The
        // tensor needs only its own bytes, so no more than those should be inflated.
        let inflated = rssBudget(fileSize: 0) + 100_000_000
        var honest = entries
        honest[storage].method = 8
        honest[storage].data = ZipTools.deflatedZeros(inflated)
        honest[storage].uncompressedSize = UInt32(inflated)
        honest[storage].crc = 0
        let p3 = try write(ZipTools.write(honest), "oversized-storage.pth")
        try assertRejectedByCLI(p3)
    }

    /// Pickles nested 100,000 deep, in the four ways the opcodes allow: marks (lists, tuples),
    /// appends, TUPLE1 on a one-value stack, and a memo chain that nests lists top-down with a
    /// stack that never grows. Reading (and freeing) them must not recurse that deep.
    func testDeeplyNestedPicklesRecurseNowhere() throws {
        let depth = 100_000
        var memoChain: [UInt8] = [0x80, 0x02, 0x5d, 0x71, 0x00]  // [] memo[0]
        for i in 1...depth {
            let index = withUnsafeBytes(of: UInt32(i).littleEndian) { Array($0) }
            memoChain += [0x5d, 0x72] + index + [0x61, 0x30, 0x6a] + index  // [] put, append, pop, get
        }
        memoChain += [0x30, 0x68, 0x00, 0x2e]  // pop, get memo[0], stop
        let pickles: [(String, [UInt8])] = [
            ("marks-lists", [0x80, 0x02] + [UInt8](repeating: 0x28, count: depth) + [UInt8](repeating: 0x6c, count: depth) + [0x2e]),
            ("marks-tuples", [0x80, 0x02] + [UInt8](repeating: 0x28, count: depth) + [UInt8](repeating: 0x74, count: depth) + [0x2e]),
            ("appends", [0x80, 0x02] + [UInt8](repeating: 0x5d, count: depth) + [UInt8](repeating: 0x61, count: depth - 1) + [0x2e]),
            ("tuple1", [0x80, 0x02, 0x4e] + [UInt8](repeating: 0x85, count: depth) + [0x2e]),
            ("memo-chain", memoChain),
        ]
        for (name, pickle) in pickles {
            let zip = ZipTools.write([
                ZipEntryBytes(
                    name: "deep/data.pkl", method: 0, data: pickle, uncompressedSize: UInt32(pickle.count),
                    crc: TestCRC32.checksum(pickle)),
                ZipEntryBytes(
                    name: "deep/byteorder", method: 0, data: Array("little".utf8), uncompressedSize: 6,
                    crc: TestCRC32.checksum(Array("little".utf8))),
            ])
            // Through the tool only: a stack overflow here would end this test process.
            try assertRejectedByCLI(try write(zip, "deep-\(name).pth"))
        }
    }

    // MARK: .safetensors

    func safetensors(_ header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) } + h + data
    }

    /// Cut inside the length, at the header's start and end, and at every tensor's first and
    /// last byte.
    func testSafetensorsTruncatedAtEveryBoundary() throws {
        let bytes = try checkpoint("model.safetensors")
        let headerLength = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let dataStart = 8 + headerLength
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any])
        var cuts = Set([0, 4, 7, 8, 9, dataStart / 2, dataStart - 1, dataStart, bytes.count - 1])
        for case let entry as [String: Any] in json.values {
            guard let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else { continue }
            cuts.formUnion([dataStart + offsets[0] + 1, dataStart + offsets[1] - 1].filter { $0 < bytes.count })
        }
        for cut in cuts.sorted() {
            assertRejected(try write(Array(bytes[..<cut]), "cut-\(cut).safetensors"), loadSafetensors)
        }
        for cut in [4, dataStart - 1, bytes.count - 1] {
            try assertRejectedByCLI(try write(Array(bytes[..<cut]), "cli-cut-\(cut).safetensors"))
        }
    }

    func testHostileSafetensorsHeaders() throws {
        let sixteen = [UInt8](repeating: 0, count: 16)
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let cases: [(String, [UInt8], [String])] = [
            ("length-past-end", withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Array($0) } + Array("{}".utf8), ["byte 0"]),
            (
                "trillion",
                safetensors(#"{"w": {"dtype": "F32", "shape": [1000000, 1000000], "data_offsets": [0, 4000000000000]}}"#, data: sixteen),
                ["tensor 'w'"]
            ),
            (
                "overflow",
                safetensors(#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 16]}}"#, data: sixteen),
                ["tensor 'w'"]
            ),
            (
                "negative", safetensors(#"{"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}"#, data: sixteen),
                ["tensor 'w'"]
            ),
            (
                "offsets-past-end",
                safetensors(
                    #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [9223372036854775800, 9223372036854775816]}}"#, data: sixteen),
                ["tensor 'w'"]
            ),
            ("deep-json", safetensors(#"{"__metadata__": {"a": "b"}, "w": "# + deep + "}", data: sixteen), []),
        ]
        for (name, bytes, parts) in cases {
            let path = try write(bytes, "\(name).safetensors")
            assertRejected(path, mentioning: parts, loadSafetensors)
            try assertRejectedByCLI(path, mentioning: parts)
        }
    }

    func testSafetensorsHeaderBitFlipsNeverCrash() throws {
        let bytes = try checkpoint("model.safetensors")
        let headerEnd = min(bytes.count, 8 + Int(bytes[0]) + Int(bytes[1]) << 8 + Int(bytes[2]) << 16)
        for offset in 0..<headerEnd {
            var b = bytes
            b[offset] ^= 1 << UInt8(offset % 8)
            let path = try write(b, "flip.safetensors")
            do { _ = try CheckpointReader.load(path: path, kind: .safetensors) } catch let e as CNXError {
                XCTAssertFalse(e.message.contains("\n"), "flip at \(offset): \(e.message)")
            }
        }
    }
}
