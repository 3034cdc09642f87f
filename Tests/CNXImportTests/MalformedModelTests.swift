import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// ModelProto bytes: one float input `x` [1, 4], the given nodes, output `y`.
func modelBytes(nodes: [(op: String, name: String, inputs: [String], output: String)], opset: Int = 17) -> [UInt8] {
    var m = ProtoWriter()
    m.int(1, 8)  // ir_version
    m.string(2, "hand-written")  // producer_name
    m.opsetImport(Int64(opset))
    m.message(7) { g in
        for n in nodes {
            g.message(1) { w in
                for i in n.inputs { w.string(1, i) }
                w.string(2, n.output)
                w.string(3, n.name)
                w.string(4, n.op)
            }
        }
        g.string(2, "g")
        for (field, name) in [(11, "x"), (12, "y")] { g.floatValueInfo(field, name: name, dims: [1, 4]) }
    }
    return m.bytes
}

final class MalformedModelTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func expectError(_ path: String, containing parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNXReader.load(path: path), file: file, line: line) { error in
            let text = "\(error)"
            for p in parts { XCTAssertTrue(text.contains(p), "'\(p)' not in: \(text)", file: file, line: line) }
        }
    }

    func testHandWrittenModelRuns() throws {
        let path = try write(modelBytes(nodes: [("Relu", "r", ["x"], "t"), ("Neg", "n", ["t"], "y")]), "ok.onnx")
        let g = try ONNXReader.load(path: path)
        XCTAssertEqual(g.nodes.map(\.op), [.relu, .neg])
        XCTAssertEqual(g.inputs.first?.shape, [.fixed(1), .fixed(4)])
    }

    func testEveryUnsupportedOpIsListedWithItsNodes() throws {
        let path = try write(
            modelBytes(nodes: [
                ("Relu", "r", ["x"], "a"), ("FancyOp", "f1", ["a"], "b"),
                ("MaxPool", "p1", ["b"], "c"), ("FancyOp", "f2", ["c"], "y"),
            ]), "ops.onnx")
        expectError(path, containing: [path, "FancyOp (f1, f2)", "MaxPool (p1)"])
    }

    func testNotProtobuf() throws {
        let path = try write(Array("this is plainly not an ONNX model\n".utf8), "text.onnx")
        expectError(path, containing: [path, "byte"])
    }

    func testEmptyFile() throws {
        expectError(try write([], "empty.onnx"), containing: ["empty"])
    }

    func testTruncatedAtManyPointsNamesTheOffset() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "legacy" })
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: entry.model)))
        for cut in [1, 7, 40, bytes.count / 3, bytes.count / 2, bytes.count - 1] {
            let path = try write(Array(bytes[..<cut]), "cut\(cut).onnx")
            XCTAssertThrowsError(try ONNXReader.load(path: path)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(path), text)
                XCTAssertTrue(text.contains("truncated") || text.contains("byte"), "cut \(cut): \(text)")
            }
        }
    }

    func testMissingExternalDataNamesThePath() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "dynamo" })
        let copy = dir.appendingPathComponent("model.onnx")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: entry.model), to: copy)
        expectError(copy.path, containing: ["external-data file not found", dir.appendingPathComponent("model.onnx.data").path])
    }

    func testExternalDataShorterThanClaimed() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "dynamo" })
        let copy = dir.appendingPathComponent("model.onnx")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: entry.model), to: copy)
        let data = try Data(contentsOf: entry.directory.appendingPathComponent("model.onnx.data"))
        try data.prefix(data.count / 2).write(to: dir.appendingPathComponent("model.onnx.data"))
        expectError(copy.path, containing: ["past the end"])
    }

    func testExternalDataIsMappedNotCopied() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.exporter == "dynamo" })
        let g = try ONNXReader.load(path: entry.model)
        XCTAssertTrue(g.initializers.values.contains { $0.storage.isBorrowed && $0.count > 64 })
        XCTAssertNotNil(g.metadata["external_data"])
    }
}

/// Initializers in every storage form the reader accepts, checked element by element.
final class InitializerFormsTests: XCTestCase {
    /// A model computing y = x + c, where c is stored as the given TensorProto fields.
    func model(initializer: (inout ProtoWriter) -> Void) -> [UInt8] {
        var m = ProtoWriter()
        m.int(1, 8)
        m.opsetImport(17)
        m.message(7) { g in
            g.message(1) { w in
                w.string(1, "x"); w.string(1, "c"); w.string(2, "y"); w.string(3, "add"); w.string(4, "Add")
            }
            g.message(5, initializer)
            for (field, name) in [(11, "x"), (12, "y")] { g.floatValueInfo(field, name: name, dims: [4]) }
        }
        return m.bytes
    }

    func load(_ bytes: [UInt8]) throws -> Graph {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.onnx").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return try ONNXReader.load(path: path)
    }

    func testFloat16RawData() throws {
        let values: [Float16] = [1.5, -2.25, 0.0009765625, 65504]
        let raw = values.flatMap { v -> [UInt8] in [UInt8(v.bitPattern & 0xff), UInt8(v.bitPattern >> 8)] }
        let g = try load(
            model { t in
                t.int(1, 4); t.int(2, 10); t.string(8, "c"); t.bytes(9, raw)
            })
        XCTAssertEqual(g.initializers["c"]?.floats, values.map { Float($0) })
    }

    func testFloatData() throws {
        var packed = ProtoWriter()
        for v: Float in [1, 2, 3, 4] { packed.bytes += withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        let g = try load(
            model { t in
                t.int(1, 4); t.int(2, 1); t.string(8, "c"); t.bytes(4, packed.bytes)
            })
        XCTAssertEqual(g.initializers["c"]?.floats, [1, 2, 3, 4])
    }

    func testInt32DataWidensToInt64() throws {
        var packed = ProtoWriter()
        for v in [7, -3, 0, 1 << 20] { packed.varint(UInt64(bitPattern: Int64(v))) }
        let g = try load(
            model { t in
                t.int(1, 4); t.int(2, 6); t.string(8, "c"); t.bytes(5, packed.bytes)
            })
        XCTAssertEqual(g.initializers["c"]?.int64s, [7, -3, 0, 1 << 20])
    }

    func testInt64Data() throws {
        var packed = ProtoWriter()
        for v in [5, -1, 1 << 40, 2] { packed.varint(UInt64(bitPattern: Int64(v))) }
        let g = try load(
            model { t in
                t.int(1, 4); t.int(2, 7); t.string(8, "c"); t.bytes(7, packed.bytes)
            })
        XCTAssertEqual(g.initializers["c"]?.int64s, [5, -1, 1 << 40, 2])
    }

    func testRawDataOfTheWrongLengthNamesTheTensor() throws {
        XCTAssertThrowsError(
            try load(
                model { t in
                    t.int(1, 4); t.int(2, 1); t.string(8, "c"); t.bytes(9, [0, 0, 0, 0])
                })
        ) {
            XCTAssertTrue("\($0)".contains("'c'") && "\($0)".contains("raw_data"), "\($0)")
        }
    }

    func testOverflowingShapeIsRefused() throws {
        XCTAssertThrowsError(
            try load(
                model { t in
                    t.int(1, 1 << 40); t.int(1, 1 << 40); t.int(2, 1); t.string(8, "c"); t.bytes(9, [])
                })
        ) {
            XCTAssertTrue("\($0)".contains("overflow"), "\($0)")
        }
    }

    func testExternalDataOutsideTheFolderIsRefused() throws {
        let bytes = model { t in
            t.int(1, 4); t.int(2, 1); t.string(8, "c")
            t.message(13) {
                $0.string(1, "location"); $0.string(2, "../../etc/passwd")
            }
            t.int(14, 1)
        }
        XCTAssertThrowsError(try load(bytes)) { XCTAssertTrue("\($0)".contains("refused"), "\($0)") }
    }
}
