import CNXFormat
import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// Graph -> .cnx -> Graph gives back the same graph and the same tensor bytes, and the writer's
/// output depends on nothing but the model.
final class RoundTripTests: XCTestCase {
    func testEveryFixtureRoundTrips() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let entries = try Fixtures.manifest()
        XCTAssertFalse(entries.isEmpty)
        for entry in entries {
            let graph = try ONNXReader.load(path: entry.model)
            let arch = try XCTUnwrap(Architecture.recognise(graph), entry.name)
            var metadata = arch.metadata
            metadata[MetadataKey.sourceFileName] = .string("model.onnx")
            metadata[MetadataKey.converterPasses] = .strings([])
            let model = CNXModel(graph: graph, metadata: metadata)
            let path = dir.appendingPathComponent("\(entry.name).cnx").path
            try CNXWriter.write(model, to: path)
            let loaded = try CNXReader.load(path: path)
            assertModelsEqual(model, loaded, entry.name)
            XCTAssertEqual(loaded.metadata[MetadataKey.depths], .ints(entry.depths.map { Int64($0) }), entry.name)
            XCTAssertEqual(loaded.metadata[MetadataKey.dims], .ints(entry.dims.map { Int64($0) }), entry.name)

            // Written twice, and written again from what was read: the same bytes each time.
            let first = try readBytes(path)
            let again = dir.appendingPathComponent("\(entry.name).again.cnx").path
            try CNXWriter.write(model, to: again)
            XCTAssertTrue(first == (try readBytes(again)), "\(entry.name): a second write differs")
            try CNXWriter.write(loaded, to: again)
            XCTAssertTrue(first == (try readBytes(again)), "\(entry.name): rewriting the loaded model differs")
            XCTAssertTrue(first == [UInt8](try CNXWriter.encode(model)), "\(entry.name): encode differs from write")
        }
    }

    func testEveryDTypeAttributeKindAndDimKindRoundTrips() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = everyKindModel()
        let path = dir.appendingPathComponent("every.cnx").path
        try CNXWriter.write(model, to: path)
        let loaded = try CNXReader.load(path: path)
        assertModelsEqual(model, loaded, "every kind")
        for dtype in DType.allCases {
            XCTAssertEqual(loaded.graph.initializers["t.\(dtype.name)"]?.dtype, dtype)
        }
        XCTAssertNil(loaded.graph.inputs[1].shape)
        XCTAssertEqual(loaded.graph.inputs[2].shape, [])
        XCTAssertEqual(loaded.graph.initializers["empty"]?.shape, [0, 7])
        XCTAssertEqual(loaded.graph.initializers["scalar"]?.floats, [Float.pi])
    }

    func testSameModelGivesSameBytesWhateverTheDictionaryOrder() throws {
        // Swift dictionaries iterate in a per-process random order; two models built separately
        // (different hash seeds per dictionary instance) must still encode identically.
        let a = try CNXWriter.encode(everyKindModel())
        let b = try CNXWriter.encode(everyKindModel())
        XCTAssertEqual(a, b)
        var shuffled = everyKindModel()
        var reordered: [String: Tensor] = [:]
        for key in shuffled.graph.initializers.keys.sorted().reversed() { reordered[key] = shuffled.graph.initializers[key] }
        shuffled.graph.initializers = reordered
        XCTAssertEqual(a, try CNXWriter.encode(shuffled))
    }

    func testLoadedTensorsAreBorrowedAnd64ByteAligned() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("every.cnx").path
        try CNXWriter.write(everyKindModel(), to: path)
        var tensor: Tensor?
        do {
            let loaded = try CNXReader.load(path: path)
            var all = Array(loaded.graph.initializers.values)
            for node in loaded.graph.nodes {
                for case .tensor(let t) in node.attributes.values { all.append(t) }
            }
            XCTAssertEqual(all.count, DType.allCases.count + 3 + 3)
            for t in all {
                XCTAssertTrue(t.storage.isBorrowed, "a loaded tensor was copied")
                XCTAssertEqual(t.withUnsafeBytes { Int(bitPattern: $0.baseAddress) } % 64, 0, "a loaded tensor is not 64-byte aligned")
            }
            tensor = loaded.graph.initializers["größe/ß"]
        }
        // The mapping outlives the model for as long as one of its tensors does.
        XCTAssertEqual(tensor?.int64s, [1, -2, Int64.max, Int64.min])
    }

    func testArchitectureMetadataUsesTheStandardKeys() throws {
        let entry = try XCTUnwrap(Fixtures.manifest().first)
        let arch = try XCTUnwrap(Architecture.recognise(try ONNXReader.load(path: entry.model)))
        var expected: [String: MetadataValue] = [
            "general.architecture": .string("convnext"), "general.family": .string(arch.family),
            "convnext.depths": .ints(entry.depths.map { Int64($0) }), "convnext.dims": .ints(entry.dims.map { Int64($0) }),
            "convnext.classes": .int(Int64(entry.num_classes)), "convnext.stem": .string(arch.stem),
        ]
        if let v = arch.variant { expected["general.variant"] = .string(v) }
        XCTAssertEqual(arch.metadata, expected)
    }
}
