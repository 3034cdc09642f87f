import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXQuantize
import CNXTestSupport
import XCTest

/// Files the converter writes, read by `SpecReader` (a reader written from Formats/CNX.md alone)
/// with the names taken from the document's tables: every byte, element type, operation,
/// attribute and metadata key must be one the document describes. The second half shows the
/// reader fails when a file holds something undocumented, or the document loses a row.
final class SpecReaderTests: XCTestCase {
    /// Written once for the whole class (conversions and int8 calibration take a few seconds).
    struct Written {
        var directory: URL
        /// name -> the file's bytes.
        var files: [(String, [UInt8])]
    }

    nonisolated(unsafe) static var written: Result<Written, Error>?

    static func files() throws -> Written {
        if let written { return try written.get() }
        let result = Result { try writeFiles() }
        written = result
        return try result.get()
    }

    override class func tearDown() {
        if case .success(let w)? = written { try? FileManager.default.removeItem(at: w.directory) }
        written = nil
        super.tearDown()
    }

    /// Float32 and int8 through `Converter.convert` (what `convert` and `quantize --int8` do), a
    /// backbone, a timm hub folder (preprocessing and class names), and unfused graphs straight
    /// from the ONNX reader (ONNX operators with all their attributes).
    static func writeFiles() throws -> Written {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-spec-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let root = Fixtures.root.appendingPathComponent("Fixtures")
        var files: [(String, [UInt8])] = []
        func convert(_ name: String, _ input: URL, _ configure: (inout Converter.Options) throws -> Void = { _ in }) throws {
            var options = Converter.Options()
            options.log = { _ in }
            try configure(&options)
            let output = dir.appendingPathComponent("\(name).cnx").path
            _ = try Converter.convert(input: input.path, output: output, options: options)
            files.append((name, [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))))
        }
        let digits = root.appendingPathComponent("digits")
        let calibration = try NPY.read(path: digits.appendingPathComponent("calib.npy").path)
        try convert("digits-float32", digits.appendingPathComponent("model.onnx"))
        try convert("digits-int8", digits.appendingPathComponent("model.onnx")) {
            var q = Quantizer.Options()
            q.quantizeHead = true  // float32 by default; int8 here so that the head's int8 attributes are walked too
            $0.int8 = (calibration, q)
        }
        try convert("digits-features", digits.appendingPathComponent("model.onnx")) { $0.features = [0, 1, 2, 3] }
        try convert("digits-bf16", digits.appendingPathComponent("model.onnx")) { $0.halfPrecision = (.bfloat16, []) }
        try convert("digits-fp16", digits.appendingPathComponent("model.onnx")) { $0.halfPrecision = (.float16, ["stages.3"]) }
        let v2 = root.appendingPathComponent("models/v2_op17")
        let v2Samples = try NPY.read(path: v2.appendingPathComponent("input.npy").path)
        try convert("v2-int8", v2.appendingPathComponent("model.onnx")) {
            var q = Quantizer.Options()
            q.method = .minmax
            $0.int8 = (v2Samples, q)
        }
        try convert("timm-hub", root.appendingPathComponent("checkpoints/timm_linear/hub"))
        // Checkpoints whose readers record what they assumed and where the weights came from:
        // transformers folders (their preprocessing, per-site epsilons, a backbone's feature
        // norms), a sharded index, an MLP head, a V2 GRN.
        try convert("transformers-384", root.appendingPathComponent("transformers/convnextv2_384"))
        try convert("transformers-backbone", root.appendingPathComponent("checkpoints/hf_convnextv2_backbone/hf")) {
            // Per-site epsilons, as `--layer-norm-eps` gives them, so that every site's key is written.
            $0.checkpoint.layerNormEps = try CheckpointOptions.parseEps("stem=1e-5,downsample=1e-4,block=1e-6,features=1e-3")
        }
        try convert("transformers-sharded", root.appendingPathComponent("checkpoints/hf_convnext/hf_sharded"))
        try convert("timm-mlp-head", root.appendingPathComponent("checkpoints/timm_mlp_head/hub"))
        for fixture in ["reference_op13", "timm_linear_op17", "torchvision_dynamo"] {
            let graph = try ONNXReader.load(path: root.appendingPathComponent("models/\(fixture)/model.onnx").path)
            files.append(("\(fixture)-unfused", [UInt8](try CNXWriter.encode(CNXModel(graph: graph)))))
        }
        return Written(directory: dir, files: files)
    }

    func file(_ name: String) throws -> [UInt8] {
        try XCTUnwrap(try Self.files().files.first { $0.0 == name }?.1, name)
    }

    // MARK: - The document's tables

    func testTheDocumentsTablesParse() throws {
        let spec = try SpecDocument.load()
        XCTAssertEqual(spec.metadataTypes.count, 8)
        XCTAssertEqual(spec.attributeTypes.count, 6)
        XCTAssertEqual(spec.dimKinds.count, 3)
        XCTAssertEqual(Set(spec.dtypes.values.map(\.name)), Set(DType.allCases.map(\.name)), "the element types are the project's DType")
        for t in DType.allCases { XCTAssertEqual(spec.dtypes[t.rawValue]?.size, t.size, t.name) }
        XCTAssertEqual(
            Set(spec.fusedOps.keys), Set(OpType.allCases.filter(\.isFused).map(\.rawValue)), "every fused operation has a section")
        XCTAssertEqual(
            Set(spec.onnxOps.keys).union(["Constant"]), Set(OpType.allCases.filter { !$0.isFused }.map(\.rawValue)),
            "every ONNX operator the graph can hold is listed (Constant is never written)")
        XCTAssertEqual(
            spec.fusedOps["cnx.Block"]?.slots.map(\.name),
            ["X", "dw_weight", "dw_bias", "W1", "B1", "W2", "B2", "grn_gamma", "grn_beta"])
        XCTAssertEqual(spec.fusedOps["cnx.Block"]?.attributes["a2_scale"]?.requirement, .whenInt8(slot: "W2"))
        XCTAssertNil(spec.fusedOps["cnx.Block"]?.attributes["w2_scales"], "since 1.2 the weight scales are in the tensor table")
        XCTAssertEqual(Set(spec.quantizationKinds.values), ["none", "per channel"])
        XCTAssertEqual(spec.version.major, 1)
        XCTAssertEqual(spec.version.minor, 2)
        XCTAssertEqual(Set(spec.metadataKeys.keys), Set(MetadataKey.all), "the document's standard keys are MetadataKey's")
    }

    // MARK: - Written files hold only what the document describes

    func assertDocumented(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let reader = SpecReader(spec: try SpecDocument.load(), bytes: try self.file(name))
        XCTAssertEqual(reader.problems, [], "\(name): what Formats/CNX.md does not describe", file: file, line: line)
    }

    func testFloat32FileIsDocumented() throws { try assertDocumented("digits-float32") }

    func testInt8FileIsDocumented() throws {
        try assertDocumented("digits-int8")
        // And it is the int8 file the document describes: int8 weights with their scales in the
        // tensor table, the activations' quantization as attributes.
        let model = try CNXReader.load(path: Self.files().directory.appendingPathComponent("digits-int8.cnx").path)
        let blocks = model.graph.nodes.filter { $0.op == .block }
        XCTAssertFalse(blocks.isEmpty)
        for b in blocks {
            XCTAssertEqual(model.graph.initializers[b.inputs[3]]?.dtype, .int8, b.name)
            XCTAssertNotNil(b.float("a1_scale"), b.name)
            XCTAssertNil(b.attributes["w2_scales"], b.name)
            let w2 = try XCTUnwrap(model.graph.initializers[b.inputs[5]], b.name)
            XCTAssertEqual(w2.dtype, .int8, b.name)
            XCTAssertEqual(w2.quantization?.axis, 1, b.name)
            XCTAssertEqual(w2.quantization?.scales.count, w2.shape[1], b.name)
            XCTAssertNil(w2.quantization?.zeroPoints, b.name)
        }
        XCTAssertNotNil(model.metadata[MetadataKey.quantizationMethod])
    }

    func testInt8V2FileWithGRNIsDocumented() throws { try assertDocumented("v2-int8") }

    func testBackboneFileIsDocumented() throws { try assertDocumented("digits-features") }

    /// bfloat16 and float16 weights: the dtypes in the weight slots the document lists them in.
    func testHalfPrecisionFilesAreDocumented() throws {
        for (name, dtype) in [("digits-bf16", DType.bfloat16), ("digits-fp16", .float16)] {
            try assertDocumented(name)
            let model = try CNXReader.load(path: Self.files().directory.appendingPathComponent("\(name).cnx").path)
            XCTAssertEqual(
                model.graph.initializers[try XCTUnwrap(model.graph.nodes.first { $0.op == .block }).inputs[3]]?.dtype, dtype, name)
            XCTAssertNotNil(model.metadata["quantization.\(dtype.name)_layers"], name)
        }
    }

    func testCheckpointFileIsDocumented() throws {
        for name in ["timm-hub", "transformers-384", "transformers-backbone", "transformers-sharded", "timm-mlp-head"] {
            try assertDocumented(name)
        }
    }

    func testUnfusedGraphsAreDocumented() throws {
        for fixture in ["reference_op13", "timm_linear_op17", "torchvision_dynamo"] { try assertDocumented("\(fixture)-unfused") }
    }

    /// The files exercise what matters: every metadata key, the four fused operations of a
    /// converted model with all their int8 attributes, GRN, and ONNX operators; otherwise the
    /// tests above would pass by seeing little.
    func testTheFilesCoverTheDocument() throws {
        let spec = try SpecDocument.load()
        var seen = Set<String>()
        for (_, bytes) in try Self.files().files { seen.formUnion(SpecReader(spec: spec, bytes: bytes).seen) }
        var expected = Set(MetadataKey.all.map { "metadata \($0)" })
        for op in ["cnx.Stem", "cnx.Downsample", "cnx.Block", "cnx.Head", "Conv", "LayerNormalization", "ReduceMean", "Transpose", "Gemm"] {
            expected.insert("op \(op)")
        }
        for (op, layers) in [("cnx.Block", [1, 2]), ("cnx.Downsample", [1]), ("cnx.Head", [1])] {
            for l in layers { expected.formUnion(["a\(l)_scale", "a\(l)_zero"].map { "attribute \(op).\($0)" }) }
        }
        expected.formUnion([
            "quantization per channel", "attribute cnx.Block.grn_epsilon", "attribute cnx.Stem.kernel", "dtype float32", "dtype int8",
            "dtype int64", "dtype bfloat16", "dtype float16",
        ])
        expected.formUnion(["format", "source", "producer", "opset", "naming_scheme"].map { "property \($0)" })
        XCTAssertEqual(expected.subtracting(seen).sorted(), [], "documented names no written file holds")
        print("spec reader: the written files hold \(seen.count) distinct names: \(seen.sorted().joined(separator: ", "))")
    }

    // MARK: - The reader can fail

    /// The digits int8 model read back, changed by `edit`, and written again.
    func problems(editing edit: (inout CNXModel) -> Void, spec: SpecDocument? = nil) throws -> [String] {
        var model = try CNXReader.load(path: Self.files().directory.appendingPathComponent("digits-int8.cnx").path)
        edit(&model)
        return SpecReader(spec: try spec ?? SpecDocument.load(), bytes: [UInt8](try CNXWriter.encode(model))).problems
    }

    /// The same, with the first `op` node changed by `edit`.
    func problems(editingFirst op: OpType, _ edit: @escaping (inout Node) -> Void) throws -> [String] {
        try problems(editing: { m in
            guard let i = m.graph.nodes.firstIndex(where: { $0.op == op }) else { return }
            edit(&m.graph.nodes[i])
        })
    }

    func assertReported(_ problems: [String], _ needle: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(
            problems.contains { $0.contains(needle) }, "expected a problem mentioning \(needle), got \(problems)", file: file, line: line)
    }

    func testAnUnchangedRewriteHasNoProblems() throws {
        XCTAssertEqual(try problems(editing: { _ in }), [])
    }

    func testAnUndocumentedAttributeIsReported() throws {
        let p = try problems(editingFirst: .block) { $0.attributes["a3_scale"] = .float(0.5) }
        assertReported(p, "attribute 'a3_scale' is not documented for cnx.Block")
    }

    func testAnAttributeOfTheWrongTypeIsReported() throws {
        let p = try problems(editingFirst: .block) { $0.attributes["a1_zero"] = .float(128) }
        assertReported(p, "attribute 'a1_zero' is a float, the document says int")
    }

    func testAMissingInt8ScaleIsReported() throws {
        let p = try problems(editingFirst: .block) { $0.attributes["a1_scale"] = nil }
        assertReported(p, "'W1' is int8 but attribute 'a1_scale' is missing")
    }

    /// The tensor table's quantization records are read from the document too: an int8 weight
    /// without its record, a record along the wrong axis, and the old attribute are refused.
    func testAnInt8WeightWithoutItsQuantizationIsReported() throws {
        func firstBlockWeight(_ m: CNXModel) -> String { m.graph.nodes.first { $0.op == .block }!.inputs[3] }
        var p = try problems(editing: { m in m.graph.initializers[firstBlockWeight(m)]?.quantization = nil })
        assertReported(p, "int8 input 3 (W1) has no quantization in the tensor table")
        p = try problems(editing: { m in
            let w = m.graph.initializers[firstBlockWeight(m)]!
            m.graph.initializers[firstBlockWeight(m)]?.quantization = Quantization(
                axis: 0, scales: [Float](repeating: 1, count: w.shape[0]))
        })
        assertReported(p, "int8 input 3 (W1) is not quantized symmetrically along axis 1")
        p = try problems(editingFirst: .block) { $0.attributes["w1_scales"] = .tensor(Tensor(floats: [1], shape: [1])) }
        assertReported(p, "attribute 'w1_scales' is not documented for cnx.Block")
        var spec = try SpecDocument.load()
        spec.quantizationKinds[1] = nil
        assertReported(SpecReader(spec: spec, bytes: try file("digits-int8")).problems, "quantization kind 1 is not documented")
    }

    func testAZeroPointOutOfRangeIsReported() throws {
        let p = try problems(editingFirst: .block) { $0.attributes["a1_zero"] = .int(300) }
        assertReported(p, "a1_zero 300 is outside 0..255")
    }

    func testAnInt8TensorInAFloatSlotIsReported() throws {
        let p = try problems(editing: { m in
            let i = m.graph.nodes.firstIndex { $0.op == .block }!
            let name = m.graph.nodes[i].inputs[2]
            let bias = m.graph.initializers[name]!
            m.graph.initializers[name] = Tensor(zeros: .int8, shape: bias.shape)
        })
        assertReported(p, "input 2 (dw_bias) is int8, the document allows float32")
    }

    func testAnUndocumentedMetadataKeyIsReported() throws {
        let p = try problems(editing: { $0.metadata["quantization.secret"] = .string("x") })
        assertReported(p, "key 'quantization.secret' is not documented")
    }

    func testAMetadataValueOfTheWrongTypeIsReported() throws {
        let p = try problems(editing: { $0.metadata[MetadataKey.quantizationSamples] = .string("64") })
        assertReported(p, "'quantization.samples' is a string, the document says int64")
    }

    func testAnUndocumentedGraphPropertyIsReported() throws {
        let p = try problems(editing: { $0.graph.metadata["exporter_secret"] = "1" })
        assertReported(p, "property 'exporter_secret' is not documented")
    }

    /// Rows taken out of the parsed document: the same file is then refused, so the test reads
    /// what the document says rather than a list of its own.
    func testARowMissingFromTheDocumentIsReported() throws {
        var spec = try SpecDocument.load()
        spec.fusedOps["cnx.Block"]?.attributes["a1_scale"] = nil
        spec.dtypes[DType.int8.rawValue] = nil
        spec.metadataKeys[MetadataKey.quantizationMethod] = nil
        spec.fusedOps["cnx.Downsample"] = nil
        let p = SpecReader(spec: spec, bytes: try file("digits-int8")).problems
        assertReported(p, "attribute 'a1_scale' is not documented for cnx.Block")
        assertReported(p, "element type 3 is not documented")
        assertReported(p, "key 'quantization.method' is not documented")
        assertReported(p, "operation 'cnx.Downsample' is not documented")
    }

    /// A row added to the document's "Attributes added after 1.0" table is accepted (the table
    /// is read like the others), and the document without it refuses the attribute.
    func testTheAddedAttributesTableIsRead() throws {
        let text = try String(contentsOfFile: SpecDocument.path, encoding: .utf8)
        let header = "| op type | attribute | type | required | default | since | meaning |\n| --- | --- | --- | --- | --- | --- | --- |\n"
        XCTAssertTrue(text.contains(header))
        let row = "| `cnx.Block` | `probe` | string | no | `\"x\"` | 1.2 | test row |\n"
        let extended = try SpecDocument(markdown: text.replacingOccurrences(of: header, with: header + row))
        let edit: (inout CNXModel) -> Void = { m in
            let i = m.graph.nodes.firstIndex { $0.op == .block }!
            m.graph.nodes[i].attributes["probe"] = .string("x")
        }
        XCTAssertEqual(try problems(editing: edit, spec: extended), [])
        assertReported(try problems(editing: edit), "attribute 'probe' is not documented for cnx.Block")
    }

    /// Byte-level damage the writer would never produce, each resealed so only the walker's own
    /// checks can catch it.
    func testByteLevelDeparturesAreReported() throws {
        let spec = try SpecDocument.load()
        let original = try file("digits-int8")
        let header = try FixedHeader(original)
        let locations = try tensorLocations(original)

        var padding = original
        let gap = try XCTUnwrap(zip(locations, locations.dropFirst()).first { $0.range.upperBound < $1.range.lowerBound })
        padding[gap.0.range.upperBound] = 1
        assertReported(SpecReader(spec: spec, bytes: padding).problems, "padding before tensor")

        var reserved = original
        reserved[90] = 1
        try fixHeaderCRC(&reserved)
        assertReported(SpecReader(spec: spec, bytes: reserved).problems, "reserved bytes are not zero")

        var op = original
        let head = Array("cnx.Head".utf8), renamed = Array("cnx.Hexd".utf8)
        let at = try XCTUnwrap((header.graph.offset..<header.tensors.offset).first { Array(op[$0..<$0 + head.count]) == head })
        op.replaceSubrange(at..<at + head.count, with: renamed)
        try fixHeaderCRC(&op)
        assertReported(SpecReader(spec: spec, bytes: op).problems, "operation 'cnx.Hexd' is not documented")

        var dtype = original
        // The first entry's dtype field: after the count, the name and the flags.
        var r = LittleEndianBytes(bytes: original, at: header.tensors.offset + 8)
        _ = try r.string()
        let dtypeField = r.at + 4
        dtype[dtypeField] = 4  // ONNX's uint16, which the format does not have
        try fixHeaderCRC(&dtype)
        assertReported(SpecReader(spec: spec, bytes: dtype).problems, "element type 4 is not documented")

        var crc = original
        crc[locations[0].range.lowerBound] ^= 0x80
        assertReported(SpecReader(spec: spec, bytes: crc).problems, "crc32 does not match")
    }
}
