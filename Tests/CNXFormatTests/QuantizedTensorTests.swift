import CNXFormat
import CNXGraph
import Foundation
import XCTest

/// Quantization kind 1 in the tensor table (Formats/CNX.md, "Quantization kinds"): written and
/// read back, and every way a record can be wrong refused with the tensor's name.
final class QuantizedTensorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-quantized-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The tiny model with an int8 initializer `q` [2, 3] quantized along axis 1, and (with
    /// `zeros`) an asymmetric uint8 `u` [4] along axis 0.
    func model(zeros: Bool = false) -> CNXModel {
        var m = tinyModel()
        var q = Tensor(zeros: .int8, shape: [2, 3])
        q.quantization = Quantization(axis: 1, scales: [0.5, 1, 2])
        m.graph.initializers["q"] = q
        if zeros {
            var u = Tensor(zeros: .uint8, shape: [4])
            u.quantization = Quantization(axis: 0, scales: [1, 2, 3, 4], zeroPoints: [0, 128, 255, 7])
            m.graph.initializers["u"] = u
        }
        return m
    }

    func load(_ bytes: [UInt8]) throws -> Result<CNXModel, CNXError> {
        let path = dir.appendingPathComponent("q.cnx").path
        try writeBytes(bytes, path)
        do { return .success(try CNXReader.load(path: path)) } catch let e as CNXError { return .failure(e) }
    }

    func refused(_ bytes: [UInt8], _ needles: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        var b = bytes
        try fixHeaderCRC(&b)
        guard case .failure(let e) = try load(b) else { return XCTFail("accepted", file: file, line: line) }
        for n in needles { XCTAssertTrue(e.message.contains(n), "\(e.message) lacks \(n)", file: file, line: line) }
    }

    func testQuantizationIsWrittenAndReadBack() throws {
        let bytes = [UInt8](try CNXWriter.encode(model(zeros: true)))
        guard case .success(let m) = try load(bytes) else { return XCTFail("refused") }
        XCTAssertEqual(m.graph.initializers["q"]?.quantization, Quantization(axis: 1, scales: [0.5, 1, 2]))
        XCTAssertEqual(m.graph.initializers["u"]?.quantization, Quantization(axis: 0, scales: [1, 2, 3, 4], zeroPoints: [0, 128, 255, 7]))
        // The parameters are the last entries, not initializers, named after their tensor.
        let names = try tensorLocations(bytes).map(\.name)
        XCTAssertEqual(Array(names.suffix(3)), ["q:scales", "u:scales", "u:zero_points"])
        XCTAssertNil(m.graph.initializers["q:scales"])
        // The record: kind 1, reserved zero, axis 1, scales index, zero_points UINT64_MAX.
        let q = try XCTUnwrap(try tensorLocations(bytes).first { $0.name == "q" })
        var r = LittleEndianBytes(bytes: bytes, at: q.offsetField - 24)
        XCTAssertEqual(try r.u8(), 1)
        XCTAssertEqual(Array(try r.take(3)), [0, 0, 0])
        XCTAssertEqual(try r.i32(), 1)
        XCTAssertEqual(try r.u64(), UInt64(names.firstIndex(of: "q:scales")!))
        XCTAssertEqual(try r.u64(), UInt64.max)
    }

    func testWrongRecordsAreRefusedNamingTheTensor() throws {
        let bytes = [UInt8](try CNXWriter.encode(model()))
        let locations = try tensorLocations(bytes)
        let record = try XCTUnwrap(locations.first { $0.name == "q" }).offsetField - 24
        let scalesIndex = UInt64(try XCTUnwrap(locations.firstIndex { $0.name == "q:scales" }))
        var b = bytes
        b[record] = 2
        try refused(b, "tensor 'q'", "quantization kind 2", "not one this reader understands")
        b = bytes; b[record + 1] = 1
        try refused(b, "tensor 'q'", "reserved")
        b = bytes; b[record + 4] = 2
        try refused(b, "tensor 'q'", "quantization axis 2")
        b = bytes; setU64(&b, at: record + 8, 99)
        try refused(b, "tensor 'q'", "refers to tensor 99")
        b = bytes; setU64(&b, at: record + 8, 0)  // an initializer
        try refused(b, "tensor 'q'", "must be a float32 [3] tensor that is not an initializer")
        b = bytes; setU64(&b, at: record + 16, scalesIndex)  // float32 zero points for an int8 tensor
        try refused(b, "tensor 'q'", "zero_points", "must be a int8 [3]")
        // A scale that is not positive: rewritten with its checksum, still refused.
        var m = model()
        m.graph.initializers["q"]?.quantization = Quantization(axis: 1, scales: [0.5, 1, 2])
        b = [UInt8](try CNXWriter.encode(m))
        let scales = try XCTUnwrap(try tensorLocations(b).first { $0.name == "q:scales" })
        for (i, byte) in withUnsafeBytes(of: Float(-1).bitPattern.littleEndian, Array.init).enumerated() {
            b[scales.range.lowerBound + i] = byte
        }
        let crc = referenceCRC32(b[scales.range])
        for i in 0..<4 { b[scales.offsetField + 16 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        try refused(b, "tensor 'q'", "'q:scales'", "must be positive and finite")
    }

    func testTheWriterRefusesWhatTheReaderWould() {
        var m = tinyModel()
        var q = Tensor(zeros: .int8, shape: [2, 3])
        q.quantization = Quantization(axis: 1, scales: [1, 1])
        m.graph.initializers["q"] = q
        XCTAssertThrowsError(try CNXWriter.encode(m)) { XCTAssertTrue("\($0)".contains("tensor 'q'"), "\($0)") }
        var f = Tensor(zeros: .float32, shape: [3])
        f.quantization = Quantization(axis: 0, scales: [1, 1, 1])
        m.graph.initializers["q"] = f
        XCTAssertThrowsError(try CNXWriter.encode(m)) { XCTAssertTrue("\($0)".contains("only int8 and uint8"), "\($0)") }
        q.quantization = Quantization(axis: 1, scales: [1, 0, 1])
        m.graph.initializers["q"] = q
        XCTAssertThrowsError(try CNXWriter.encode(m)) { XCTAssertTrue("\($0)".contains("positive and finite"), "\($0)") }
    }
}
