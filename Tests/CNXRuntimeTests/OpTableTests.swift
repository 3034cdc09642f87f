import CNXGraph
import CNXReference
import Foundation
import XCTest

/// The op table as a whole: every op type has a schema (with a shape function) and a reference
/// kernel, and on a concrete node of each type the shape function predicts exactly the type and
/// shape the kernel computes.
final class OpTableTests: XCTestCase {
    func testEveryOpTypeHasASchemaAndAKernel() {
        XCTAssertEqual(Set(OpSchema.table.keys), Set(OpType.allCases))
        XCTAssertEqual(Set(ReferenceKernels.table.keys), Set(OpType.allCases))
        for op in OpType.allCases {
            let schema = op.schema
            XCTAssertEqual(schema.op, op)
            XCTAssertEqual(Set(schema.inputs.map(\.name)).count, schema.inputs.count, "\(op.rawValue): slot names repeat")
            XCTAssertEqual(Set(schema.attributes.map(\.name)).count, schema.attributes.count, "\(op.rawValue): attribute names repeat")
            XCTAssertFalse(schema.outputs.isEmpty, op.rawValue)
            // Optional inputs come after the required ones, so that arity says what is required.
            if let firstOptional = schema.inputs.firstIndex(where: { !$0.required }) {
                XCTAssertFalse(
                    schema.inputs[firstOptional...].contains { $0.required }, "\(op.rawValue): a required slot after an optional one")
            }
            for (i, slot) in schema.inputs.enumerated() { XCTAssertEqual(schema.slot(slot.name), i) }
        }
    }

    /// Shape function and kernel agree on every op type (Constant excepted: the readers fold it,
    /// and both refuse it).
    func testShapeFunctionsPredictWhatTheKernelsCompute() throws {
        for op in OpType.allCases {
            guard let (node, tensors) = Self.sample(op) else {
                let constant = Node(
                    name: "c", op: op, inputs: [], outputs: ["y"], attributes: ["value": .tensor(Tensor(floats: [1], shape: [1]))])
                XCTAssertThrowsError(try ReferenceKernels.evaluate(constant, [])) {
                    XCTAssertTrue("\($0)".contains("folded by the reader"), "\($0)")
                }
                XCTAssertThrowsError(try constant.schema.shape(ShapeInference.Context(node: constant, values: [])))
                continue
            }
            var initializers: [String: Tensor] = [:]
            for (name, t) in zip(node.inputs, tensors) where !name.isEmpty { initializers[name] = t }
            let graph = Graph(
                inputs: [], outputs: [ValueInfo(name: node.outputs[0], dtype: .float32, shape: nil)], nodes: [node],
                initializers: initializers)
            let facts = try Verifier.verify(graph)
            let predicted = try XCTUnwrap(facts[node.outputs[0]], op.rawValue)
            let computed = try ReferenceKernels.evaluate(node, node.inputs.map { $0.isEmpty ? nil : initializers[$0] })
            XCTAssertEqual(computed.count, 1, op.rawValue)
            XCTAssertEqual(predicted.dtype, computed[0].dtype, op.rawValue)
            XCTAssertEqual(
                predicted.shape, computed[0].shape.map { .fixed($0) },
                "\(op.rawValue): predicted \(predicted.shape.map(describe) ?? "nil"), computed \(computed[0].shape)")
            XCTAssertTrue(computed[0].count > 0, op.rawValue)
        }
    }

    /// Every op type a pass, reader or lowering names in the sources has a schema and a kernel
    /// (the tables are built over `OpType.allCases`, and the readers map op names through
    /// `OpType(rawValue:)`; this catches an op spelled as a string that the enum lost).
    func testTheTableCoversEveryOpTheSourcesEmit() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources").standardized
        let files = try XCTUnwrap(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        let cases = Set(OpType.allCases.map { "\($0)" })
        var named: Set<String> = []
        let pattern = try NSRegularExpression(
            pattern: #"op: \.([a-zA-Z0-9]+)|op == \.([a-zA-Z0-9]+)|case \.(stem|block|head|downsample|linear|grn)\b"#)
        let rawNames = try NSRegularExpression(pattern: #""(cnx\.[A-Za-z]+)""#)
        var spelled: Set<String> = []
        for case let url as URL in files where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            let range = NSRange(text.startIndex..., in: text)
            for m in pattern.matches(in: text, range: range) {
                for g in 1..<m.numberOfRanges { if let r = Range(m.range(at: g), in: text) { named.insert(String(text[r])) } }
            }
            for m in rawNames.matches(in: text, range: range) {
                if let r = Range(m.range(at: 1), in: text) { spelled.insert(String(text[r])) }
            }
        }
        XCTAssertTrue(named.count > 20, "found only \(named.sorted())")
        for name in named.sorted() { XCTAssertTrue(cases.contains(name), "the sources name op .\(name), which has no table entry") }
        for raw in spelled.sorted() { XCTAssertNotNil(OpType(rawValue: raw), "the sources spell op type \(raw), which has no table entry") }
        XCTAssertTrue(spelled.contains("cnx.Block"), "\(spelled.sorted())")
    }

    /// MatMul whose batch axes broadcast on both sides (A [2, 1, 3, 4] x B [3, 4, 5]): each
    /// output matrix is the product of the A and B matrices its batch index selects, written
    /// out as sums here.
    func testBatchedMatMulBroadcastsBothBatches() throws {
        let a = Self.f([2, 1, 3, 4]), b = Self.f([3, 4, 5], seed: 2)
        let node = Node(name: "mm", op: .matMul, inputs: ["a", "b"], outputs: ["y"])
        let y = try XCTUnwrap(try ReferenceKernels.evaluate(node, [a, b]).first)
        XCTAssertEqual(y.shape, [2, 3, 3, 5])
        let av = a.floats, bv = b.floats, yv = y.floats
        for i in 0..<2 {
            for j in 0..<3 {
                for r in 0..<3 {
                    for c in 0..<5 {
                        var sum: Float = 0
                        for k in 0..<4 { sum += av[(i * 3 + r) * 4 + k] * bv[(j * 4 + k) * 5 + c] }
                        XCTAssertEqual(yv[((i * 3 + j) * 3 + r) * 5 + c], sum, accuracy: 1e-5)
                    }
                }
            }
        }
    }

    // MARK: samples

    /// Deterministic values in [lo, hi).
    static func values(_ n: Int, seed: UInt64, lo: Float = -1, hi: Float = 1) -> [Float] {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return lo + (hi - lo) * Float(s >> 40) / Float(1 << 24)
        }
    }

    static func f(_ shape: [Int], seed: UInt64 = 1, lo: Float = -1, hi: Float = 1) -> Tensor {
        Tensor(floats: values(shape.reduce(1, *), seed: seed, lo: lo, hi: hi), shape: shape)
    }

    static func i(_ v: [Int64], shape: [Int]? = nil) -> Tensor { Tensor(int64s: v, shape: shape ?? [v.count]) }

    /// A valid node of type `op` and its input tensors (nil for Constant).
    static func sample(_ op: OpType) -> (Node, [Tensor])? {
        func node(_ inputs: [Tensor], _ attributes: [String: Attribute] = [:], names: [String]? = nil) -> (Node, [Tensor]) {
            let names = names ?? inputs.indices.map { "in\($0)" }
            return (Node(name: "sample", op: op, inputs: names, outputs: ["y"], attributes: attributes), inputs)
        }
        switch op {
        case .add, .sub, .mul, .div: return node([f([2, 3]), f([3], seed: 2, lo: 0.5, hi: 2)])
        case .pow: return node([f([2, 3], lo: 0.1, hi: 2), f([1], seed: 2)])
        case .sqrt, .reciprocal: return node([f([2, 3], lo: 0.1, hi: 2)])
        case .erf, .tanh, .relu, .sigmoid, .neg: return node([f([2, 3])])
        case .gelu: return node([f([2, 3])], ["approximate": .string("tanh")])
        case .swish: return node([f([2, 3])], ["alpha": .float(1.5)])
        case .conv:
            return node(
                [f([1, 2, 5, 5]), f([4, 2, 3, 3], seed: 2), f([4], seed: 3)], ["strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        case .matMul: return node([f([2, 3, 4]), f([4, 5], seed: 2)])
        case .gemm: return node([f([2, 3]), f([5, 3], seed: 2), f([5], seed: 3)], ["transB": .int(1)])
        case .reduceMean, .reduceL2, .reduceSum: return node([f([2, 3, 4]), i([1])], ["keepdims": .int(0)])
        case .reduceProd: return node([f([2, 3]), i([-1])])
        case .layerNormalization: return node([f([2, 3, 4]), f([4], seed: 2), f([4], seed: 3)], ["epsilon": .float(1e-5)])
        case .rmsNormalization: return node([f([2, 4]), f([4], seed: 2)], ["axis": .int(-1)])
        case .simpleNorm: return node([f([2, 4]), f([4], seed: 2)])
        case .globalAveragePool: return node([f([1, 2, 3, 3])])
        case .transpose: return node([f([2, 3, 4])], ["perm": .ints([2, 0, 1])])
        case .reshape: return node([f([2, 3, 4]), i([0, -1])])
        case .flatten: return node([f([2, 3, 4])], ["axis": .int(2)])
        case .squeeze: return node([f([2, 1, 3]), i([1])])
        case .unsqueeze: return node([f([2, 3]), i([0, 3])])
        case .concat: return node([f([2, 3]), f([2, 1], seed: 2)], ["axis": .int(1)])
        case .gather: return node([f([3, 4]), i([2, 0])], ["axis": .int(0)])
        case .shape: return node([f([2, 3, 4])], ["start": .int(1)])
        case .slice: return node([f([4, 5]), i([1]), i([3]), i([1]), i([1])])
        case .expand: return node([f([3, 1]), i([2, 3, 4])])
        case .cast: return node([f([2, 3], hi: 9)], ["to": .int(Int(DType.int64.rawValue))])
        case .constantOfShape: return node([i([2, 3])], ["value": .tensor(Tensor(floats: [1.5], shape: [1]))])
        case .range: return node([i([0], shape: []), i([7], shape: []), i([2], shape: [])])
        case .identity, .dropout: return node([f([2, 3])])
        case .constant: return nil
        case .linear: return node([f([2, 3, 4]), f([4, 5], seed: 2), f([5], seed: 3)], ["activation": .string("gelu")])
        case .grn: return node([f([1, 2, 2, 3]), f([3], seed: 2), f([3], seed: 3)], ["grn_epsilon": .float(1e-6)])
        case .stem:
            return node(
                [f([1, 3, 8, 8]), f([48, 6], seed: 2), f([6], seed: 3), f([6], seed: 4), f([6], seed: 5)],
                ["kernel": .int(4), "epsilon": .float(1e-6)])
        case .downsample:
            return node([f([1, 4, 4, 3]), f([12, 5], seed: 2), f([5], seed: 3), f([3], seed: 4), f([3], seed: 5)], ["kernel": .int(2)])
        case .block:
            return node(
                [
                    f([1, 5, 5, 4]), f([3, 3, 4], seed: 2), f([4], seed: 3), f([4, 8], seed: 4), f([8], seed: 5),
                    f([8, 4], seed: 6), f([4], seed: 7), f([8], seed: 8), f([8], seed: 9),
                ], ["grn_epsilon": .float(1e-6)])
        case .features: return node([f([1, 3, 2, 4]), f([4], seed: 2), f([4], seed: 3)], ["norm": .string("rms")])
        case .head:
            return node(
                [
                    f([1, 3, 3, 4]), f([4, 6], seed: 2), f([6], seed: 3), f([6, 2], seed: 4), f([2], seed: 5), f([4], seed: 6),
                    f([4], seed: 7),
                ],
                ["activation": .string("gelu")])
        }
    }
}
