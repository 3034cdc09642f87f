import CNXFormat
import CNXGraph
import CNXRuntime
import CNXTestSupport
import XCTest

/// Damaged and malicious .cnx files: each is refused with one `CNXError` that names the file,
/// the section or tensor and the byte offset, through the library and through the tool, without
/// allocating what the file merely claims.
final class HostileCNXTests: HostileFileTestCase {
    /// `Fixtures/cnx/tiny.cnx`: small enough to be cut at every field.
    var tiny: [UInt8] = []
    var layout: CNXLayoutWalker!

    override func setUpWithError() throws {
        try super.setUpWithError()
        tiny = [UInt8](try Data(contentsOf: Fixtures.root.appendingPathComponent("Fixtures/cnx/tiny.cnx")))
        layout = CNXLayoutWalker(tiny)
    }

    /// XCTest keeps every test case object until the process ends: let go of the bytes now.
    override func tearDownWithError() throws {
        tiny = []
        layout = nil
        try super.tearDownWithError()
    }

    func load(_ path: String) throws -> Any { try CNXReader.load(path: path) }

    /// A tensor of rank 2 or more, whose dims the tests rewrite.
    func matrixEntry() throws -> CNXLayoutWalker.TensorEntry {
        try XCTUnwrap(layout.tensors.first { $0.rank >= 2 }, "tiny.cnx has no tensor of rank 2 or more")
    }

    func testTheWalkerReadsTinyAsTheReaderDoes() throws {
        for s in layout.sections {
            XCTAssertEqual(s.boundaries.last, s.start + s.size, "\(s.name) walked to its end")
        }
        let model = try CNXReader.load(path: try write(tiny, "tiny.cnx"))
        XCTAssertEqual(model.graph.initializers.count, layout.tensors.count)
        var copy = tiny
        CNXLayoutWalker.reseal(&copy)
        XCTAssertEqual(copy, tiny, "resealing an intact file changes nothing")
    }

    /// The file cut at every field of the header, every field of every section, and the start and
    /// end of every tensor's data.
    func testTruncatedAtEveryBoundary() throws {
        let cuts = layout.allBoundaries + [tiny.count - 1]
        XCTAssertGreaterThan(cuts.count, 100)
        for cut in cuts {
            let path = try write(Array(tiny[..<cut]), "cut-\(cut).cnx")
            assertRejected(path, mentioning: cut >= 4 ? ["truncated", "byte"] : ["too short"], load)
        }
        // Through the tool: the start of each section, of the data, and the middle of a tensor.
        let t = try matrixEntry()
        for cut in layout.sections.map(\.start) + [layout.dataOffset, layout.dataOffset + t.dataOffset + t.byteCount / 2] {
            try assertRejectedByCLI(try write(Array(tiny[..<cut]), "cli-cut-\(cut).cnx"), mentioning: ["truncated", "byte"])
        }
    }

    /// Each section made shorter (its size field lowered, the header checksum recomputed) so
    /// that it ends at each of its own fields: the reader names the section and the offset.
    func testEachSectionCutShortAtEveryField() throws {
        for s in layout.sections {
            for b in s.boundaries.dropLast() {
                var bytes = tiny
                bytes.put(UInt64(b - s.start), at: s.headerField + 8)
                CNXLayoutWalker.reseal(&bytes)
                let path = try write(bytes, "short-\(s.headerField)-\(b).cnx")
                assertRejected(path, mentioning: [s.name, "byte"], load)
            }
        }
        var bytes = tiny
        let table = layout.sections[2]
        bytes.put(UInt64(table.boundaries[table.boundaries.count / 2] - table.start), at: table.headerField + 8)
        CNXLayoutWalker.reseal(&bytes)
        try assertRejectedByCLI(try write(bytes, "short-table.cnx"), mentioning: ["tensor table", "byte"])
    }

    /// One bit flipped in every byte of the file. The checksums catch every flip except those in
    /// the alignment padding between tensors, which no reader looks at.
    func testBitFlipsAreCaughtByTheChecksums() throws {
        var accepted: [Int] = []
        for offset in 0..<tiny.count {
            var bytes = tiny
            bytes[offset] ^= 1 << UInt8(offset % 8)
            let path = try write(bytes, "flip.cnx")
            do {
                _ = try CNXReader.load(path: path)
                accepted.append(offset)
            } catch let e as CNXError {
                // A version from the future is named as such; everything else by its byte offset.
                let named = e.message.contains("byte") || (4..<6).contains(offset) && e.message.contains("format")
                XCTAssertTrue(e.message.hasPrefix(path) && named, "flip at \(offset): \(e.message)")
            }
        }
        for offset in accepted { XCTAssertTrue(layout.isPadding(offset), "a flip at byte \(offset) went unnoticed") }
    }

    /// One bit flipped in every byte of the header area, the checksum then recomputed, so the
    /// parser itself meets every damaged field: it refuses the file or reads a model that the
    /// runtime then loads or refuses, and never crashes.
    func testResealedBitFlipsNeverCrash() throws {
        for offset in 0..<layout.dataOffset where offset < 8 || offset >= 12 {
            for bit in [0, 7] {
                var bytes = tiny
                bytes[offset] ^= 1 << UInt8(bit)
                CNXLayoutWalker.reseal(&bytes)
                let path = try write(bytes, "flip.cnx")
                do {
                    let file = try CNXReader.load(path: path)
                    _ = try Model(graph: file.graph, metadata: file.metadata, threads: 1)
                } catch let e as CNXError {
                    XCTAssertFalse(e.message.isEmpty || e.message.contains("\n"), "flip at \(offset): \(e.message)")
                }
            }
        }
    }

    func testLengthsAndOffsetsPastTheEnd() throws {
        let t = try matrixEntry()
        let metadata = layout.sections[0]
        var cases: [(String, [String], (inout [UInt8]) -> Void)] = [
            ("metadata-size", ["metadata section", "not inside"], { $0.put(UInt64(1) << 40, at: metadata.headerField + 8) }),
            ("metadata-offset", ["metadata section", "not inside"], { $0.put(UInt64(1) << 40, at: metadata.headerField) }),
            ("metadata-offset-huge", ["metadata_offset", "too large"], { $0.put(UInt64.max - 7, at: metadata.headerField) }),
            ("data-offset", ["truncated", "bytes 64..<80"], { $0.put(UInt64(1) << 62, at: 64) }),
            ("data-size", ["overflows"], { $0.put(UInt64(Int64.max) - 1, at: 72) }),
            ("tensor-offset", ["tensor '\(t.name)'", "past the end"], { $0.put(UInt64(1) << 30, at: t.offsetField) }),
            ("tensor-offset-huge", ["too large", "byte \(t.offsetField)"], { $0.put(UInt64.max - 63, at: t.offsetField) }),
            ("tensor-count", ["tensor count", "cannot fit"], { $0.put(UInt64(1) << 60, at: self.layout.sections[2].start) }),
            ("metadata-key-length", ["claims", "byte \(metadata.start + 8)"], { $0.put(UInt64(1) << 40, at: metadata.start + 8) }),
        ]
        cases.append(("tensor-rank", ["rank", "cannot fit"], { $0.put(UInt64(0xFFFF_FFFF), at: t.rankField, width: 4) }))
        for (name, parts, edit) in cases {
            try assertEditRejected("\(name).cnx", reader: parts + ["byte"], cli: parts, edit)
        }
    }

    /// The tiny file with `edit` made and resealed (so that only the edit is wrong), written as
    /// `name`: the reader refuses it with a message holding `reader`, the CLI with `cli`.
    func assertEditRejected(
        _ name: String, reader: [String], cli: [String], file: StaticString = #filePath, line: UInt = #line,
        _ edit: (inout [UInt8]) -> Void
    ) throws {
        var bytes = tiny
        edit(&bytes)
        CNXLayoutWalker.reseal(&bytes)
        let path = try write(bytes, name)
        assertRejected(path, mentioning: reader, load, file: file, line: line)
        try assertRejectedByCLI(path, mentioning: cli, file: file, line: line)
    }

    /// A tensor whose dims multiply past Int.max, and one whose element count in bytes does.
    func testShapeProductsThatOverflowInt() throws {
        let t = try matrixEntry()
        for (name, dims) in [("elements", [Int64(1) << 32, Int64(1) << 32]), ("bytes", [Int64(1) << 31, Int64(1) << 31])] {
            try assertEditRejected(
                "overflow-\(name).cnx", reader: ["tensor '\(t.name)'", "overflows", "byte \(t.rankField)"], cli: ["overflows"]
            ) {
                for (i, d) in dims.enumerated() { $0.put(d, at: t.dimsField + 8 * i) }
            }
        }
    }

    func testNegativeDimensions() throws {
        let t = try matrixEntry()
        try assertEditRejected("negative.cnx", reader: ["tensor '\(t.name)'", "dimension 0 is -1", "byte \(t.dimsField)"], cli: ["-1"]) {
            $0.put(Int64(-1), at: t.dimsField)
        }
    }

    /// A tensor table entry claiming 10^12 float32 elements (4 TB), consistent with its own
    /// byte_count, in a 2 KB file; and a header claiming a 4 TB data section.
    func testHeaderClaimingATrillionElements() throws {
        let t = try matrixEntry()
        try assertEditRejected("trillion.cnx", reader: ["tensor '\(t.name)'", "past the end"], cli: ["past the end"]) {
            $0.put(Int64(1_000_000), at: t.dimsField)
            $0.put(Int64(1_000_000), at: t.dimsField + 8)
            for axis in 2..<t.rank { $0.put(Int64(1), at: t.dimsField + 8 * axis) }
            $0.put(UInt64(4_000_000_000_000), at: t.byteCountField)
        }
        try assertEditRejected("trillion-data.cnx", reader: ["truncated", "bytes 64..<80"], cli: ["truncated"]) {
            $0.put(UInt64(4_000_000_000_000), at: 72)
        }
    }

    /// The runtime's entry point refuses what the reader refuses, with the same message.
    func testModelInitRefusesADamagedFile() throws {
        var bytes = tiny
        bytes[layout.sections[1].start + 3] ^= 0x40
        let path = try write(bytes, "damaged.cnx")
        XCTAssertThrowsError(try Model(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix(path) && "\(error)".contains("checksum"), "\(error)")
        }
    }
}
