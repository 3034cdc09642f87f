import CNXFormat
import CNXGraph
import CNXTestSupport
import XCTest

/// Reads the committed `Fixtures/cnx/tiny.cnx` field by field with nothing but the layout in
/// Formats/CNX.md (no CNXReader, no zlib), so the document, the file and the code must agree.
///
/// After an intended format change, regenerate the file with
/// `CNX_REGENERATE_FIXTURES=1 swift test --filter FileLayoutTests` and update these expectations.
final class FileLayoutTests: XCTestCase {
    func testTinyFixtureIsWhatTheWriterWrites() throws {
        let encoded = [UInt8](try CNXWriter.encode(tinyModel()))
        if ProcessInfo.processInfo.environment["CNX_REGENERATE_FIXTURES"] == "1" {
            try FileManager.default.createDirectory(
                atPath: (tinyFixturePath as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true)
            try CNXWriter.write(tinyModel(), to: tinyFixturePath)
        }
        XCTAssertTrue(
            encoded == (try readBytes(tinyFixturePath)),
            "the writer no longer produces Fixtures/cnx/tiny.cnx: a format change needs a new version and a regenerated fixture")
    }

    func testTinyFixtureLoads() throws {
        let model = try CNXReader.load(path: tinyFixturePath)
        assertModelsEqual(tinyModel(), model, "tiny.cnx")
    }

    func testReferenceCRC32MatchesTheCheckValue() {
        XCTAssertEqual(referenceCRC32(Array("123456789".utf8)), 0xCBF4_3926)
    }

    func testTinyFixtureFieldByField() throws {
        let file = try readBytes(tinyFixturePath)
        var r = LittleEndianBytes(bytes: file, at: 0)

        // struct cnx_file_header
        XCTAssertEqual(Array(try r.take(4)), [0x43, 0x4E, 0x58, 0x00], "magic")
        XCTAssertEqual(try r.u16(), 1, "version_major")
        XCTAssertEqual(try r.u16(), 2, "version_minor")
        XCTAssertEqual(r.at, 8)
        let headerCRC = try r.u32()
        XCTAssertEqual(try r.u32(), 0, "flags")
        XCTAssertEqual(r.at, 16)
        let metadataOffset = try r.int(), metadataSize = try r.int()
        let graphOffset = try r.int(), graphSize = try r.int()
        let tensorsOffset = try r.int(), tensorsSize = try r.int()
        XCTAssertEqual(r.at, 64)
        let dataOffset = try r.int(), dataSize = try r.int()
        XCTAssertEqual(Array(try r.take(16)), [UInt8](repeating: 0, count: 16), "reserved")
        XCTAssertEqual(r.at, 96, "the fixed header is 96 bytes")

        // Writers place the sections back to back after the fixed header, then pad to 64.
        XCTAssertEqual(metadataOffset, 96)
        XCTAssertEqual(graphOffset, metadataOffset + metadataSize)
        XCTAssertEqual(tensorsOffset, graphOffset + graphSize)
        let headerEnd = tensorsOffset + tensorsSize
        XCTAssertEqual(dataOffset % 64, 0, "data_offset is a multiple of 64")
        XCTAssertEqual(dataOffset, (headerEnd + 63) / 64 * 64, "data_offset is the first multiple of 64 after the tensor table")
        XCTAssertTrue(file[headerEnd..<dataOffset].allSatisfy { $0 == 0 }, "padding before the data is zero")
        XCTAssertEqual(file.count, dataOffset + dataSize, "the file ends where the data section ends")

        // header_crc32: bytes [0, data_offset) with the field itself taken as zero.
        var header = Array(file[0..<dataOffset])
        for i in 8..<12 { header[i] = 0 }
        XCTAssertEqual(headerCRC, referenceCRC32(header), "header_crc32")

        // Metadata section: count, then entries sorted by key, each key, type, value.
        r.at = metadataOffset
        XCTAssertEqual(try r.int(), 8, "metadata count")
        try r.expectKey("convnext.classes", tag: 2, "CNX_META_INT64")
        XCTAssertEqual(try r.i64(), 4)
        try r.expectKey("general.architecture", tag: 1, "CNX_META_STRING")
        XCTAssertEqual(try r.string(), "convnext")
        try r.expectKey("general.class_names", tag: 8, "CNX_META_STRING_ARRAY")
        try r.expectStrings(["cat", "dog", "fish", "bird"])
        try r.expectKey("input.size", tag: 6, "CNX_META_INT64_ARRAY")
        XCTAssertEqual(try r.int(), 2)
        XCTAssertEqual([try r.i64(), try r.i64()], [8, 8])
        try r.expectKey("preprocess.crop_pct", tag: 3, "CNX_META_FLOAT32")
        XCTAssertEqual(try r.f32(), 0.875)
        try r.expectKey("preprocess.mean", tag: 7, "CNX_META_FLOAT32_ARRAY")
        XCTAssertEqual(try r.int(), 3)
        XCTAssertEqual([try r.f32(), try r.f32(), try r.f32()], [0.485, 0.456, 0.406])
        try r.expectKey("test.bool", tag: 5, "CNX_META_BOOL")
        XCTAssertEqual(try r.u8(), 1)
        try r.expectKey("test.double", tag: 4, "CNX_META_FLOAT64")
        XCTAssertEqual(try r.f64(), 0.1)
        XCTAssertEqual(r.at, graphOffset, "the metadata section ends where metadata_size says")

        // Graph section: properties, inputs, outputs, nodes.
        XCTAssertEqual(try r.int(), 1, "property count")
        XCTAssertEqual(try r.string(), "producer")
        XCTAssertEqual(try r.string(), "hand-built")
        XCTAssertEqual(try r.int(), 1, "input count")
        XCTAssertEqual(try r.string(), "image")
        XCTAssertEqual(try r.i32(), 1, "float32")
        XCTAssertEqual(try r.i64(), 4, "rank")
        XCTAssertEqual(try r.u8(), 2, "CNX_DIM_SYMBOLIC")
        XCTAssertEqual(try r.string(), "batch")
        XCTAssertEqual([try r.i64(), try r.i64()], [1, 1], "num, den")
        for value in [3, 8, 8] {
            XCTAssertEqual(try r.u8(), 1, "CNX_DIM_FIXED")
            XCTAssertEqual(try r.i64(), Int64(value))
        }
        XCTAssertEqual(try r.int(), 1, "output count")
        XCTAssertEqual(try r.string(), "logits")
        XCTAssertEqual(try r.i32(), 1)
        XCTAssertEqual(try r.i64(), 2)
        XCTAssertEqual(try r.u8(), 2)
        XCTAssertEqual(try r.string(), "batch")
        XCTAssertEqual([try r.i64(), try r.i64()], [1, 1])
        XCTAssertEqual(try r.u8(), 1)
        XCTAssertEqual(try r.i64(), 4)

        XCTAssertEqual(try r.int(), 2, "node count")
        // Node 0: name, op type, inputs (an omitted one is ""), outputs, attributes by name.
        try r.expectNode("stem", "cnx.Stem", inputs: ["image", "stem.weight", ""], outputs: ["features"], attributes: 2)
        try r.expectKey("epsilon", tag: 1, "CNX_ATTR_FLOAT")
        XCTAssertEqual(try r.f32(), 1e-6)
        try r.expectKey("kernel", tag: 2, "CNX_ATTR_INT")
        XCTAssertEqual(try r.i64(), 4)
        // Node 1.
        try r.expectNode("head", "cnx.Head", inputs: ["features", "head.weight", "head.bias"], outputs: ["logits"], attributes: 1)
        try r.expectKey("epsilon", tag: 1, "CNX_ATTR_FLOAT")
        XCTAssertEqual(try r.f32(), 1e-6)
        XCTAssertEqual(r.at, tensorsOffset, "the graph section ends where graph_size says")

        // Tensor table: initializers sorted by name; data placed in table order, 64-aligned.
        let expected: [(name: String, shape: [Int64], values: [Float])] = [
            ("head.bias", [4], [0.5, -0.5, 1, -1]),
            ("head.weight", [2, 4], ramp(8, start: 0.25, step: -0.125)),
            ("stem.weight", [48, 2], ramp(96, start: -0.5, step: 0.01)),
        ]
        XCTAssertEqual(try r.int(), expected.count, "tensor count")
        var nextOffset = 0
        for t in expected {
            XCTAssertEqual(try r.string(), t.name)
            XCTAssertEqual(try r.u32(), 1, "\(t.name): flags: CNX_TENSOR_INITIALIZER")
            XCTAssertEqual(try r.i32(), 1, "\(t.name): dtype float32")
            XCTAssertEqual(try r.u32(), UInt32(t.shape.count), "\(t.name): rank")
            XCTAssertEqual(try t.shape.map { _ in try r.i64() }, t.shape, "\(t.name): shape")
            XCTAssertEqual(Array(try r.take(24)), [UInt8](repeating: 0, count: 24), "\(t.name): quantization (kind 0, all zero)")
            let offset = try r.int(), byteCount = try r.int(), crc = try r.u32()
            XCTAssertEqual(offset % 64, 0, "\(t.name): offset is a multiple of 64")
            XCTAssertEqual(offset, (nextOffset + 63) / 64 * 64, "\(t.name): at the first multiple of 64 after the previous tensor")
            XCTAssertTrue(file[dataOffset + nextOffset..<dataOffset + offset].allSatisfy { $0 == 0 }, "\(t.name): padding is zero")
            XCTAssertEqual(byteCount, t.values.count * 4, "\(t.name): byte_count")
            let data = Array(file[dataOffset + offset..<dataOffset + offset + byteCount])
            XCTAssertEqual(crc, referenceCRC32(data), "\(t.name): crc32")
            var d = LittleEndianBytes(bytes: data, at: 0)
            XCTAssertEqual(try t.values.map { _ in try d.f32() }, t.values, "\(t.name): values, little-endian float32")
            nextOffset = offset + byteCount
        }
        XCTAssertEqual(r.at, headerEnd, "the tensor table ends where tensors_size says")
        XCTAssertEqual(dataSize, nextOffset, "data_size is the end of the last tensor")
    }
}

extension LittleEndianBytes {
    /// A metadata entry's or attribute's key, then its type tag (`tagName`); the value follows.
    fileprivate mutating func expectKey(
        _ key: String, tag: UInt8, _ tagName: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        XCTAssertEqual(try string(), key, file: file, line: line)
        XCTAssertEqual(try u8(), tag, "\(key): \(tagName)", file: file, line: line)
    }

    /// A count, then that many strings.
    fileprivate mutating func expectStrings(_ expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try int(), expected.count, "count of \(expected)", file: file, line: line)
        XCTAssertEqual(try expected.map { _ in try string() }, expected, file: file, line: line)
    }

    /// A node's name, op type, inputs (an omitted one is ""), outputs and attribute count; the
    /// attributes follow.
    fileprivate mutating func expectNode(
        _ name: String, _ op: String, inputs: [String], outputs: [String], attributes: Int,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        XCTAssertEqual(try string(), name, file: file, line: line)
        XCTAssertEqual(try string(), op, "\(name): op type", file: file, line: line)
        try expectStrings(inputs, file: file, line: line)
        try expectStrings(outputs, file: file, line: line)
        XCTAssertEqual(try int(), attributes, "\(name): attribute count", file: file, line: line)
    }
}
