import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

/// Damaged and malicious ONNX files: each is refused with one `CNXError` naming the file (and
/// the field's byte offset where the damage is in the wire format), through the library and the
/// tool, without allocating what the file merely claims; deep nesting recurses nowhere.
final class HostileONNXTests: HostileFileTestCase {
    func load(_ path: String) throws -> Any { try ONNXReader.load(path: path) }

    /// The smallest committed legacy-exporter fixture (weights inline, as raw_data).
    func fixtureBytes() throws -> [UInt8] {
        let legacy = try Fixtures.manifest().filter { $0.exporter == "legacy" }
        let sized = try legacy.map { ($0, try FileManager.default.attributesOfItem(atPath: $0.model)[.size] as? Int ?? 0) }
        let smallest = try XCTUnwrap(sized.min { $0.1 < $1.1 }?.0)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: smallest.model)))
    }

    /// y = Relu(x + c), x float [1, 4]; `initializer` writes c's TensorProto fields, `attribute`
    /// adds fields to an extra attribute of the Relu node.
    func tinyModel(
        initializer: (inout ProtoWriter) -> Void = { t in
            t.int(1, 4); t.int(2, 1); t.string(8, "c"); t.bytes(9, [UInt8](repeating: 0, count: 16))
        },
        inputDims: [Int64] = [1, 4],
        attribute: ((inout ProtoWriter) -> Void)? = nil,
        extraModelField: [UInt8] = []
    ) -> [UInt8] {
        var m = ProtoWriter()
        m.int(1, 8)
        m.string(2, "hostile")
        m.opsetImport(17)
        m.message(7) { g in
            g.message(1) { n in
                n.string(1, "x"); n.string(1, "c"); n.string(2, "s"); n.string(3, "add"); n.string(4, "Add")
            }
            g.message(1) { n in
                n.string(1, "s"); n.string(2, "y"); n.string(3, "relu"); n.string(4, "Relu")
                if let attribute { n.message(5, attribute) }
            }
            g.string(2, "g")
            g.message(5, initializer)
            for (field, name, dims) in [(11, "x", inputDims), (12, "y", [Int64(1), 4])] {
                g.floatValueInfo(field, name: name, dims: dims)
            }
        }
        return m.bytes + extraModelField
    }

    func testTheHandWrittenModelLoads() throws {
        let g = try ONNXReader.load(path: try write(tinyModel(), "ok.onnx"))
        XCTAssertEqual(g.nodes.map(\.op), [.add, .relu])
        let r = try runMeasured(["inspect", try write(tinyModel(), "ok2.onnx")])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    /// The fixture cut at every message boundary the wire format shows (each field's key, each
    /// sub-message's payload start and end, at every depth). A cut inside a sub-message leaves
    /// a length that runs past the end: refused, naming the byte offset. A cut between two
    /// fields of the ModelProto itself leaves a shorter, well-formed model: refused or read.
    func testTruncatedAtEveryMessageBoundary() throws {
        let bytes = try fixtureBytes()
        let fields = try XCTUnwrap(ProtoField.parse(bytes))
        var nested = Set<Int>()
        for (f, depth) in ProtoField.all(fields) where depth > 0 {
            nested.formUnion([f.start, f.payloadRange.lowerBound, f.payloadRange.upperBound])
        }
        for f in fields where f.wire == 2 { nested.insert(f.payloadRange.lowerBound) }
        let topLevel = Set(fields.map(\.start))
        nested.subtract(topLevel)
        nested.remove(bytes.count)
        XCTAssertGreaterThan(nested.count, 500)
        for cut in nested.sorted() {
            let path = try write(Array(bytes[..<cut]), "cut.onnx")
            assertRejected(path, mentioning: ["truncated", "byte"], load)
        }
        for cut in topLevel.sorted() {
            let path = try write(Array(bytes[..<cut]), "top.onnx")
            do { _ = try ONNXReader.load(path: path) } catch let e as CNXError {
                XCTAssertTrue(e.message.hasPrefix(path), e.message)
            }
        }
        let sample = nested.sorted()
        for cut in [sample[1], sample[sample.count / 3], sample[sample.count / 2], sample[sample.count - 1]] {
            try assertRejectedByCLI(try write(Array(bytes[..<cut]), "cli-cut-\(cut).onnx"), mentioning: ["truncated", "byte"])
        }
    }

    /// One sub-message of each kind (node, attribute, initializer, value info, type, shape,
    /// dimension, opset) cut short at each of its own boundaries, with every enclosing length
    /// fixed: whatever the rest of the file then means, the answer is one CNXError or a graph.
    func testEachKindOfMessageCutShort() throws {
        let bytes = try fixtureBytes()
        var kinds = Set<ProtoField.Kind>()
        var edited = 0
        let reference = try XCTUnwrap(ProtoField.parse(bytes))
        for (index, (f, _)) in ProtoField.all(reference).enumerated() where f.wire == 2 && f.kind != .opaque && f.kind != .graph {
            guard kinds.insert(f.kind).inserted, let children = f.children else { continue }
            var cuts = Set(children.flatMap { [$0.start, $0.payloadRange.lowerBound] })
            cuts.formUnion(children.map { $0.payloadRange.lowerBound + 1 }.filter { $0 < f.payloadRange.upperBound })
            for cut in cuts.sorted() {
                let tree = try XCTUnwrap(ProtoField.parse(bytes))
                let target = ProtoField.all(tree)[index].field
                target.children = nil
                target.raw = Array(bytes[f.payloadRange.lowerBound..<cut])
                let path = try write(ProtoField.serialize(tree), "short.onnx")
                edited += 1
                do { _ = try ONNXReader.load(path: path) } catch let e as CNXError {
                    XCTAssertTrue(e.message.hasPrefix(path) && !e.message.contains("\n"), e.message)
                    if ProcessInfo.processInfo.environment["DEBUG_MSG"] != nil {
                        print("MSG \(f.kind) \(cut - f.payloadRange.lowerBound): \(e.message.dropFirst(path.count))")
                    }
                }
            }
        }
        XCTAssertTrue(kinds.isSuperset(of: [.node, .attribute, .tensor, .valueInfo, .type, .shape, .dim, .opset]), "\(kinds)")
        XCTAssertGreaterThan(edited, 20)
    }

    /// One bit flipped in every byte of the hand-written model (all eight bits), and at 400
    /// places spread over the fixture.
    func testBitFlipsNeverCrash() throws {
        func check(_ bytes: [UInt8], _ label: String) throws {
            let path = try write(bytes, "flip.onnx")
            do { _ = try ONNXReader.load(path: path) } catch let e as CNXError {
                XCTAssertTrue(e.message.hasPrefix(path) && !e.message.contains("\n"), "\(label): \(e.message)")
            }
        }
        let tiny = tinyModel()
        for offset in 0..<tiny.count {
            for bit in 0..<8 {
                var b = tiny
                b[offset] ^= 1 << UInt8(bit)
                try check(b, "tiny byte \(offset) bit \(bit)")
            }
        }
        let fixture = try fixtureBytes()
        for i in 0..<400 {
            var b = fixture
            let offset = i < 200 ? i * 7 : (fixture.count / 200) * (i - 200)
            b[offset] ^= 1 << UInt8(i % 8)
            try check(b, "fixture byte \(offset)")
        }
    }

    func testLengthsAndOffsetsPastTheEnd() throws {
        // The graph field's length says 2^62 bytes.
        let tiny = tinyModel()
        let fields = try XCTUnwrap(ProtoField.parse(tiny))
        let graph = try XCTUnwrap(fields.first { $0.number == 7 })
        var longGraph: [UInt8] = Array(tiny[..<graph.start]) + [0x3A]
        ProtoField.encodeVarint(UInt64(1) << 62, into: &longGraph)
        longGraph += tiny[graph.payloadRange]
        let p1 = try write(longGraph, "graph-length.onnx")
        assertRejected(p1, mentioning: ["field 7 of ModelProto at byte \(graph.start)", "claims"], load)
        try assertRejectedByCLI(p1, mentioning: ["claims"])

        // An initializer's raw_data length past the end of the file, inside a well-formed graph
        // length: the node walk finds it.
        let rawPastEnd = tinyModel(initializer: { t in
            t.int(1, 4); t.int(2, 1); t.string(8, "c")
            t.varint(9 << 3 | 2); t.varint(1 << 40)
        })
        let p2 = try write(rawPastEnd, "raw-length.onnx")
        assertRejected(p2, mentioning: ["TensorProto", "claims"], load)
        try assertRejectedByCLI(p2, mentioning: ["claims"])

        // External data whose offset and length lie past the end of the data file.
        try Data(count: 16).write(to: dir.appendingPathComponent("w.bin"))
        for (name, offset, length) in [("offset", "1099511627776", "16"), ("length", "0", "17"), ("sum", "8", "16")] {
            let external = tinyModel(initializer: { t in
                t.int(1, 4); t.int(2, 1); t.string(8, "c"); t.int(14, 1)
                for (k, v) in [("location", "w.bin"), ("offset", offset), ("length", length)] {
                    t.message(13) {
                        $0.string(1, k); $0.string(2, v)
                    }
                }
            })
            let path = try write(external, "external-\(name).onnx")
            assertRejected(path, mentioning: ["initializer 'c'"], load)
            try assertRejectedByCLI(path, mentioning: ["initializer 'c'"])
        }
    }

    func testShapeProductsThatOverflowInt() throws {
        for (name, dims) in [("elements", [Int64(1) << 32, Int64(1) << 32, 4]), ("bytes", [Int64(1) << 31, Int64(1) << 31])] {
            let model = tinyModel(initializer: { t in
                for d in dims { t.int(1, d) }
                t.int(2, 1); t.string(8, "c"); t.bytes(9, [UInt8](repeating: 0, count: 16))
            })
            let path = try write(model, "overflow-\(name).onnx")
            assertRejected(path, mentioning: ["initializer 'c'", "overflows"], load)
            try assertRejectedByCLI(path, mentioning: ["overflows"])
        }
    }

    func testNegativeDimensions() throws {
        let negativeInitializer = tinyModel(initializer: { t in
            t.int(1, -1); t.int(1, 4); t.int(2, 1); t.string(8, "c"); t.bytes(9, [UInt8](repeating: 0, count: 16))
        })
        let p1 = try write(negativeInitializer, "negative-initializer.onnx")
        assertRejected(p1, mentioning: ["initializer 'c'", "-1"], load)
        try assertRejectedByCLI(p1, mentioning: ["-1"])

        let p2 = try write(tinyModel(inputDims: [1, -3]), "negative-input.onnx")
        assertRejected(p2, mentioning: ["'x'", "negative dimension -3"], load)
        try assertRejectedByCLI(p2, mentioning: ["-3"])
    }

    /// Initializers claiming 10^12 float32 elements (4 TB) in every storage form, in files of a
    /// few hundred bytes: refused before anything of that size is allocated.
    func testHeaderClaimingATrillionElements() throws {
        try Data(count: 16).write(to: dir.appendingPathComponent("w.bin"))
        let forms: [(String, (inout ProtoWriter) -> Void)] = [
            ("raw", { $0.bytes(9, [UInt8](repeating: 0, count: 16)) }),
            ("float-data", { $0.bytes(4, [UInt8](repeating: 0, count: 16)) }),
            (
                "int32-data",
                { t in
                    t.int(2, 10); t.bytes(5, [0, 0, 0, 0])
                }
            ),
            (
                "external",
                { t in
                    t.int(14, 1)
                    t.message(13) {
                        $0.string(1, "location"); $0.string(2, "w.bin")
                    }
                }
            ),
        ]
        for (name, storage) in forms {
            let model = tinyModel(initializer: { t in
                t.int(1, 1_000_000); t.int(1, 1_000_000); t.int(2, 1); t.string(8, "c")
                storage(&t)
            })
            let path = try write(model, "trillion-\(name).onnx")
            assertRejected(path, mentioning: ["initializer 'c'"], load)
            try assertRejectedByCLI(path, mentioning: ["initializer 'c'"])
        }
    }

    /// Nesting 10,000 deep where the schema has none (protobuf-c keeps unknown fields as bytes,
    /// the wire check skips them): inside an unknown ModelProto field, inside an attribute's
    /// tensor, and ONNX's own recursion (an attribute's subgraph whose node has an attribute
    /// with a subgraph...), which this schema does not know. Read or refused, never a crash.
    func testDeepNestingRecursesNowhere() throws {
        let depth = 10_000
        func varint(_ v: Int) -> [UInt8] {
            var w = ProtoWriter()
            w.varint(UInt64(v))
            return w.bytes
        }
        /// `depth` levels around `innermost`, built from the inside out in linear time: each level
        /// is a prefix computed from the length of what it wraps.
        func nested(depth: Int, innermost: [UInt8] = [], prefix: (Int) -> [UInt8]) -> [UInt8] {
            var prefixes: [[UInt8]] = []
            var length = innermost.count
            for _ in 0..<depth {
                let p = prefix(length)
                prefixes.append(p)
                length += p.count
            }
            var out: [UInt8] = []
            out.reserveCapacity(length)
            for p in prefixes.reversed() { out += p }
            return out + innermost
        }
        let unknown = nested(depth: depth) { [0x9A, 0x06] + varint($0) }  // field 99, length-delimited
        // ONNX's own recursion, unknown to this schema: AttributeProto.g (6) -> GraphProto.node (1)
        // -> NodeProto.attribute (5) -> AttributeProto.g ...
        var head = ProtoWriter()
        head.string(1, "body")
        head.int(20, 5)
        var nodeHead = ProtoWriter()
        nodeHead.string(4, "If")
        let subgraphs = nested(depth: depth, innermost: head.bytes) { inner in
            let node = nodeHead.bytes.count + 1 + varint(inner).count + inner
            let graph = 1 + varint(node).count + node
            return head.bytes + [0x32] + varint(graph) + [0x0A] + varint(node) + nodeHead.bytes + [0x2A] + varint(inner)
        }
        let cases: [(String, [UInt8])] = [
            ("unknown-model-field", tinyModel(extraModelField: unknown)),
            (
                "attribute-tensor",
                tinyModel(attribute: { a in
                    a.string(1, "deep"); a.int(20, 4)
                    a.message(5) { t in
                        t.int(2, 1); t.bytes(99, unknown)
                    }
                })
            ),
            ("subgraphs", tinyModel(attribute: { a in a.bytes += subgraphs })),
        ]
        for (name, bytes) in cases {
            let path = try write(bytes, "deep-\(name).onnx")
            do { _ = try ONNXReader.load(path: path) } catch let e as CNXError {
                XCTAssertTrue(e.message.hasPrefix(path) && !e.message.contains("\n"), "\(name): \(e.message)")
            }
            let r = try runMeasured(["inspect", path])
            XCTAssertNil(r.signal, "\(name): killed by signal \(r.signal ?? 0)")
            XCTAssertTrue(r.status == 0 || r.status == 1 && r.stderr.split(separator: "\n").count == 1, "\(name): \(r.stderr)")
            if let peak = r.peakRSS { XCTAssertLessThan(peak, rssBudget(fileSize: bytes.count), name) }
        }
    }

    /// A graph 20,000 nodes long: the verifier, shape inference and architecture recognition
    /// walk it without recursion.
    func testALongChainOfNodes() throws {
        var m = ProtoWriter()
        m.int(1, 8)
        m.opsetImport(17)
        let count = 20_000
        m.message(7) { g in
            for i in 0..<count {
                g.message(1) { n in
                    n.string(1, i == 0 ? "x" : "t\(i - 1)"); n.string(2, i == count - 1 ? "y" : "t\(i)"); n.string(4, "Relu")
                }
            }
            for (field, name) in [(11, "x"), (12, "y")] { g.floatValueInfo(field, name: name, dims: [4]) }
        }
        let path = try write(m.bytes, "chain.onnx")
        XCTAssertEqual(try ONNXReader.load(path: path).nodes.count, count)
        let r = try runMeasured(["inspect", path])
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
