import CNXFormat
import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// The committed example file that `FileLayoutTests` reads field by field.
let tinyFixturePath = Fixtures.root.appendingPathComponent("Fixtures/cnx/tiny.cnx").path

/// Float32 values that differ from tensor to tensor and survive a round trip bit for bit.
func ramp(_ count: Int, start: Float, step: Float) -> [Float] {
    (0..<count).map { start + Float($0) * step }
}

/// The model in `Fixtures/cnx/tiny.cnx`: a patchify stem and a head on an 8x8 RGB image, three
/// float32 tensors, one property, and one metadata entry of each type.
func tinyModel() -> CNXModel {
    let graph = Graph(
        inputs: [ValueInfo(name: "image", dtype: .float32, shape: [.symbol("batch"), .fixed(3), .fixed(8), .fixed(8)])],
        outputs: [ValueInfo(name: "logits", dtype: .float32, shape: [.symbol("batch"), .fixed(4)])],
        nodes: [
            Node(
                name: "stem", op: .stem, inputs: ["image", "stem.weight", ""], outputs: ["features"],
                attributes: ["kernel": .int(4), "epsilon": .float(1e-6)]),
            Node(
                name: "head", op: .head, inputs: ["features", "head.weight", "head.bias"], outputs: ["logits"],
                attributes: ["epsilon": .float(1e-6)]),
        ],
        initializers: [
            "stem.weight": Tensor(floats: ramp(48 * 2, start: -0.5, step: 0.01), shape: [48, 2]),
            "head.weight": Tensor(floats: ramp(2 * 4, start: 0.25, step: -0.125), shape: [2, 4]),
            "head.bias": Tensor(floats: [0.5, -0.5, 1, -1], shape: [4]),
        ],
        metadata: ["producer": "hand-built"])
    let metadata: [String: MetadataValue] = [
        "general.architecture": .string("convnext"),
        "convnext.classes": .int(4),
        "preprocess.crop_pct": .float(0.875),
        "test.double": .double(0.1),
        "test.bool": .bool(true),
        "input.size": .ints([8, 8]),
        "preprocess.mean": .floats([0.485, 0.456, 0.406]),
        "general.class_names": .strings(["cat", "dog", "fish", "bird"]),
    ]
    return CNXModel(graph: graph, metadata: metadata)
}

/// A model with every dtype, attribute kind, dim kind and metadata type, and the edge cases:
/// scalar and empty tensors, an unknown shape, an omitted input, non-ASCII names, NaN.
func everyKindModel() -> CNXModel {
    func raw(_ dtype: DType, _ shape: [Int], seed: UInt8) -> Tensor {
        let t = Tensor(zeros: dtype, shape: shape)
        t.withUnsafeMutableElementBytes { p in
            for i in p.indices { p[i] = UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)) }
        }
        return t
    }
    var initializers: [String: Tensor] = [:]
    for (i, dtype) in DType.allCases.enumerated() {
        initializers["t.\(dtype.name)"] = raw(dtype, [3, 5], seed: UInt8(i))
    }
    initializers["scalar"] = Tensor(floats: [Float.pi], shape: [])
    initializers["empty"] = Tensor(zeros: .float32, shape: [0, 7])
    initializers["größe/ß"] = Tensor(int64s: [1, -2, Int64.max, Int64.min], shape: [2, 2])
    let graph = Graph(
        inputs: [
            ValueInfo(
                name: "x", dtype: .float32,
                shape: [.symbol("batch"), .fixed(3), .symbol("height"), .symbolic(name: "width", num: 3, den: 32)]),
            ValueInfo(name: "unshaped", dtype: .int64, shape: nil),
            ValueInfo(name: "scalar_in", dtype: .float16, shape: []),
        ],
        outputs: [ValueInfo(name: "y", dtype: .float32, shape: [.unknown, .fixed(0), .fixed(Int(Int32.max) + 7)])],
        nodes: [
            Node(
                name: "conv", op: .conv, inputs: ["x", "t.float32", ""], outputs: ["c"],
                attributes: [
                    "f": .float(-0.0), "nan": .float(.nan), "i": .int(Int.min), "s": .string("Grüße ✓"), "empty_s": .string(""),
                    "fs": .floats([1.5, -.infinity, .leastNonzeroMagnitude]), "is": .ints([0, -1, Int.max]),
                    "no_ints": .ints([]), "no_floats": .floats([]),
                    "t": .tensor(raw(.int64, [2], seed: 9)), "t16": .tensor(raw(.float16, [4, 1], seed: 3)),
                ]),
            Node(
                name: "", op: .block, inputs: ["c", "", "t.int8"], outputs: ["y", ""],
                attributes: [
                    "t": .tensor(Tensor(floats: [], shape: [0]))
                ]),
            Node(name: "#2", op: .constantOfShape, inputs: ["t.int64"], outputs: ["z"]),
        ],
        initializers: initializers,
        metadata: ["": "empty key", "producer": "test", "ünïcode": ""])
    let metadata: [String: MetadataValue] = [
        "s": .string("text ✓"), "empty": .string(""), "i": .int(Int64.min), "f": .float(.nan), "d": .double(-.infinity),
        "yes": .bool(true), "no": .bool(false), "is": .ints([Int64.max, 0]), "no_is": .ints([]),
        "fs": .floats([0.1, .greatestFiniteMagnitude]), "no_fs": .floats([]), "ss": .strings(["a", "", "ü"]),
        "no_ss": .strings([]),
    ]
    return CNXModel(graph: graph, metadata: metadata)
}

// MARK: - Comparison

func bytes(of t: Tensor) -> [UInt8] {
    t.withUnsafeBytes { Array($0) }
}

func assertTensorsEqual(_ a: Tensor, _ b: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.dtype, b.dtype, "\(what): dtype", file: file, line: line)
    XCTAssertEqual(a.shape, b.shape, "\(what): shape", file: file, line: line)
    if a.dtype == b.dtype && a.shape == b.shape {
        XCTAssertTrue(bytes(of: a) == bytes(of: b), "\(what): bytes differ", file: file, line: line)
    }
}

/// Equal as the format promises: bit for bit for floats (so NaN equals NaN), byte for byte for tensors.
func attributesEqual(_ a: Attribute, _ b: Attribute) -> Bool {
    switch (a, b) {
    case (.int(let x), .int(let y)): return x == y
    case (.float(let x), .float(let y)): return x.bitPattern == y.bitPattern
    case (.string(let x), .string(let y)): return x == y
    case (.ints(let x), .ints(let y)): return x == y
    case (.floats(let x), .floats(let y)): return x.map(\.bitPattern) == y.map(\.bitPattern)
    case (.tensor(let x), .tensor(let y)): return x.dtype == y.dtype && x.shape == y.shape && bytes(of: x) == bytes(of: y)
    default: return false
    }
}

func metadataEqual(_ a: MetadataValue, _ b: MetadataValue) -> Bool {
    switch (a, b) {
    case (.float(let x), .float(let y)): return x.bitPattern == y.bitPattern
    case (.double(let x), .double(let y)): return x.bitPattern == y.bitPattern
    case (.floats(let x), .floats(let y)): return x.map(\.bitPattern) == y.map(\.bitPattern)
    default: return a == b
    }
}

func assertValueInfosEqual(_ a: [ValueInfo], _ b: [ValueInfo], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.map(\.name), b.map(\.name), "\(what) names", file: file, line: line)
    XCTAssertEqual(a.map(\.dtype), b.map(\.dtype), "\(what) dtypes", file: file, line: line)
    XCTAssertEqual(a.map(\.shape), b.map(\.shape), "\(what) shapes", file: file, line: line)
}

/// Everything a .cnx file holds, compared exactly.
func assertModelsEqual(_ a: CNXModel, _ b: CNXModel, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    assertValueInfosEqual(a.graph.inputs, b.graph.inputs, "\(what): inputs", file: file, line: line)
    assertValueInfosEqual(a.graph.outputs, b.graph.outputs, "\(what): outputs", file: file, line: line)
    XCTAssertEqual(a.graph.metadata, b.graph.metadata, "\(what): graph properties", file: file, line: line)
    XCTAssertEqual(a.graph.nodes.count, b.graph.nodes.count, "\(what): node count", file: file, line: line)
    for (i, (x, y)) in zip(a.graph.nodes, b.graph.nodes).enumerated() {
        let label = "\(what): node \(i) '\(x.name)'"
        XCTAssertEqual(x.name, y.name, label, file: file, line: line)
        XCTAssertEqual(x.op, y.op, label, file: file, line: line)
        XCTAssertEqual(x.inputs, y.inputs, label, file: file, line: line)
        XCTAssertEqual(x.outputs, y.outputs, label, file: file, line: line)
        XCTAssertEqual(Set(x.attributes.keys), Set(y.attributes.keys), label, file: file, line: line)
        for (key, value) in x.attributes {
            guard let other = y.attributes[key] else { continue }
            XCTAssertTrue(attributesEqual(value, other), "\(label) attribute '\(key)': \(value) vs \(other)", file: file, line: line)
        }
    }
    XCTAssertEqual(Set(a.graph.initializers.keys), Set(b.graph.initializers.keys), "\(what): initializer names", file: file, line: line)
    for (name, t) in a.graph.initializers {
        guard let u = b.graph.initializers[name] else { continue }
        assertTensorsEqual(t, u, "\(what): initializer '\(name)'", file: file, line: line)
    }
    XCTAssertEqual(Set(a.metadata.keys), Set(b.metadata.keys), "\(what): metadata keys", file: file, line: line)
    for (key, value) in a.metadata {
        guard let other = b.metadata[key] else { continue }
        XCTAssertTrue(metadataEqual(value, other), "\(what): metadata '\(key)': \(value) vs \(other)", file: file, line: line)
    }
}

// MARK: - Files

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Overwrites the file in place: creating or truncating files is slow enough on some file
/// systems to dominate the fuzz tests, which write thousands of variants of one file.
func writeBytes(_ bytes: [UInt8], _ path: String) throws {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CNXError("\(path): cannot open for writing") }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    guard written == bytes.count, ftruncate(fd, off_t(bytes.count)) == 0 else { throw CNXError("\(path): cannot write") }
}

/// The error `body` throws, as a CNXError; fails the test when it throws nothing or something else.
func cnxError(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> CNXError? {
    do {
        try body()
        XCTFail("\(what): no error", file: file, line: line)
    } catch let e as CNXError {
        return e
    } catch {
        XCTFail("\(what): not a CNXError: \(error)", file: file, line: line)
    }
    return nil
}

// MARK: - An independent view of the bytes (Formats/CNX.md), for tests that damage files

/// Reads little-endian fields from a byte array, failing the test instead of trapping.
struct LittleEndianBytes {
    let bytes: [UInt8]
    var at: Int

    struct OutOfBounds: Error {}

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, at <= bytes.count - n else { throw OutOfBounds() }
        defer { at += n }
        return bytes[at..<at + n]
    }

    mutating func unsigned(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    mutating func u8() throws -> UInt8 { UInt8(try unsigned(1)) }
    mutating func u16() throws -> UInt16 { UInt16(try unsigned(2)) }
    mutating func u32() throws -> UInt32 { UInt32(try unsigned(4)) }
    mutating func u64() throws -> UInt64 { try unsigned(8) }
    mutating func i32() throws -> Int32 { Int32(bitPattern: try u32()) }
    mutating func i64() throws -> Int64 { Int64(bitPattern: try u64()) }
    mutating func f32() throws -> Float { Float(bitPattern: try u32()) }
    mutating func f64() throws -> Double { Double(bitPattern: try u64()) }
    mutating func int() throws -> Int {
        guard let v = Int(exactly: try u64()) else { throw OutOfBounds() }
        return v
    }

    mutating func string() throws -> String {
        let n = try int()
        return String(decoding: try take(n), as: UTF8.self)
    }
}

/// CRC-32 written out from its definition (reflected polynomial 0xEDB88320, initial and final
/// complement), so the tests do not check zlib against itself.
func referenceCRC32<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = crcTable[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return ~crc
}

/// The CRC of each byte value, bit by bit: the usual table, so the fuzz tests stay quick.
private let crcTable: [UInt32] = (0..<256).map { (n: Int) -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    return c
}

/// The fixed header's fields, at the offsets Formats/CNX.md gives.
struct FixedHeader {
    var major: UInt16, minor: UInt16, headerCRC: UInt32
    var metadata: (offset: Int, size: Int), graph: (offset: Int, size: Int), tensors: (offset: Int, size: Int)
    var dataOffset: Int, dataSize: Int

    init(_ bytes: [UInt8]) throws {
        var r = LittleEndianBytes(bytes: bytes, at: 4)
        major = try r.u16()
        minor = try r.u16()
        headerCRC = try r.u32()
        _ = try r.u32()
        metadata = (try r.int(), try r.int())
        graph = (try r.int(), try r.int())
        tensors = (try r.int(), try r.int())
        dataOffset = try r.int()
        dataSize = try r.int()
    }
}

/// Recomputes `header_crc32` after a test has changed header bytes on purpose.
func fixHeaderCRC(_ bytes: inout [UInt8]) throws {
    let h = try FixedHeader(bytes)
    guard h.dataOffset >= 12 else { return }
    let end = min(h.dataOffset, bytes.count)
    var header = Array(bytes[0..<end])
    for i in 8..<12 { header[i] = 0 }
    let crc = referenceCRC32(header)
    for i in 0..<4 { bytes[8 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
}

func setU16(_ bytes: inout [UInt8], at offset: Int, _ v: UInt16) {
    bytes[offset] = UInt8(v & 0xFF)
    bytes[offset + 1] = UInt8(v >> 8)
}

func setU64(_ bytes: inout [UInt8], at offset: Int, _ v: UInt64) {
    for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
}

/// Where each tensor's bytes are in the file, read from the tensor table by the byte layout alone.
struct TensorLocation {
    var name: String
    /// Absolute byte range of the tensor's data.
    var range: Range<Int>
    /// Absolute offset of the entry's `offset` field.
    var offsetField: Int
}

func tensorLocations(_ bytes: [UInt8]) throws -> [TensorLocation] {
    let h = try FixedHeader(bytes)
    var r = LittleEndianBytes(bytes: bytes, at: h.tensors.offset)
    let count = try r.int()
    var result: [TensorLocation] = []
    for _ in 0..<count {
        let name = try r.string()
        _ = try r.take(4 + 4)  // flags, dtype
        let rank = Int(try r.u32())
        _ = try r.take(8 * rank + 24)  // shape, quantization
        let offsetField = r.at
        let offset = try r.int()
        let byteCount = try r.int()
        _ = try r.u32()  // crc32
        result.append(
            TensorLocation(
                name: name, range: h.dataOffset + offset..<h.dataOffset + offset + byteCount,
                offsetField: offsetField))
    }
    return result
}
