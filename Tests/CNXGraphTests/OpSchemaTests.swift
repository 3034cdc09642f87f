import CNXGraph
import Foundation
import XCTest

/// The verifier checks every node against its op's schema, and names the node and the op.
final class OpSchemaTests: XCTestCase {
    private func tensor(_ shape: [Int], _ dtype: DType = .float32) -> Tensor { Tensor(zeros: dtype, shape: shape) }

    /// A graph of one node reading graph input `x` [1, 4, 4, 3] (NHWC) and the given constants.
    private func graph(_ node: Node, _ constants: [String: Tensor], input: [Int] = [1, 4, 4, 3]) -> Graph {
        Graph(
            inputs: [ValueInfo(name: "x", dtype: .float32, shape: input.map { .fixed($0) })],
            outputs: [ValueInfo(name: node.outputs.first ?? "y", dtype: .float32, shape: nil)],
            nodes: [node], initializers: constants)
    }

    private func assertRefused(_ g: Graph, _ fragments: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Verifier.verify(g), file: file, line: line) { error in
            let message = "\(error)"
            for f in fragments { XCTAssertTrue(message.contains(f), "'\(f)' not in: \(message)", file: file, line: line) }
        }
    }

    private var downsampleConstants: [String: Tensor] { ["w": tensor([12, 5]), "b": tensor([5])] }

    private func downsample(
        _ inputs: [String] = ["x", "w", "b"], _ attributes: [String: Attribute] = ["kernel": .int(2)],
        outputs: [String] = ["y"]
    ) -> Node {
        Node(name: "stages.1.downsample", op: .downsample, inputs: inputs, outputs: outputs, attributes: attributes)
    }

    func testAWellFormedFusedNodePasses() throws {
        let facts = try Verifier.verify(graph(downsample(), downsampleConstants))
        XCTAssertEqual(facts["y"]?.shape, [.fixed(1), .fixed(2), .fixed(2), .fixed(5)])
    }

    func testWrongArityNamesNodeAndOp() {
        assertRefused(
            graph(downsample(["x", "w"]), downsampleConstants), "cnx.Downsample node 'stages.1.downsample'", "has 2 inputs", "takes 3 to 5")
        let add = Node(name: "adder", op: .add, inputs: ["x", "x", "x"], outputs: ["y"])
        assertRefused(graph(add, [:]), "Add node 'adder'", "has 3 inputs", "takes 2 (A, B)")
    }

    func testARequiredInputLeftEmptyIsRefused() {
        assertRefused(graph(downsample(["x", "", "b"]), downsampleConstants), "cnx.Downsample node 'stages.1.downsample'", "input 1 (W)")
    }

    func testAnAttributeOfTheWrongKindIsRefused() {
        assertRefused(
            graph(downsample(["x", "w", "b"], ["kernel": .string("2")]), downsampleConstants),
            "cnx.Downsample node 'stages.1.downsample'", "'kernel' is string", "takes int")
        let t = Node(name: "to_nhwc", op: .transpose, inputs: ["x"], outputs: ["y"], attributes: ["perm": .floats([0, 2, 3, 1])])
        assertRefused(graph(t, [:]), "Transpose node 'to_nhwc'", "'perm' is floats")
    }

    func testAnUnknownAttributeOfAFusedOpIsRefused() {
        assertRefused(
            graph(downsample(["x", "w", "b"], ["kernel": .int(2), "kernal": .int(2)]), downsampleConstants),
            "cnx.Downsample node 'stages.1.downsample'", "'kernal'")
    }

    /// ONNX operators may carry attributes of other opsets: those the project does not read pass.
    func testAnUnknownAttributeOfAnONNXOperatorPasses() throws {
        let relu = Node(name: "act", op: .relu, inputs: ["x"], outputs: ["y"], attributes: ["some_future_attribute": .int(1)])
        XCTAssertNoThrow(try Verifier.verify(graph(relu, [:])))
    }

    func testAMissingRequiredAttributeIsRefused() {
        assertRefused(
            graph(downsample(["x", "w", "b"], [:]), downsampleConstants), "cnx.Downsample node 'stages.1.downsample'", "'kernel'")
        let cast = Node(name: "c", op: .cast, inputs: ["x"], outputs: ["y"])
        assertRefused(graph(cast, [:]), "Cast node 'c'", "'to'")
    }

    func testTooManyOutputsAreRefused() {
        assertRefused(
            graph(downsample(outputs: ["y", "z"]), downsampleConstants), "cnx.Downsample node 'stages.1.downsample'", "2 outputs")
    }

    /// An int8 layer needs its quantization attributes; an int8 tensor only goes where the
    /// schema lists int8 (Formats/CNX.md, int8 layers).
    func testInt8LayersAreChecked() throws {
        var constants = downsampleConstants
        constants["w"] = tensor([12, 5], .int8)
        assertRefused(graph(downsample(), constants), "cnx.Downsample node 'stages.1.downsample'", "'W' is int8", "a1_scale")
        let quantized = downsample(
            ["x", "w", "b"],
            [
                "kernel": .int(2), "a1_scale": .float(0.1), "a1_zero": .int(128),
                "w1_scales": .tensor(Tensor(floats: [1, 1, 1, 1, 1], shape: [5])),
            ])
        XCTAssertNoThrow(try Verifier.verify(graph(quantized, constants)))
        constants["b"] = tensor([5], .int8)
        assertRefused(graph(quantized, constants), "cnx.Downsample node 'stages.1.downsample'", "input 2 (B) is int8")
    }

    func testSlotsAreFoundByName() {
        let block = OpType.block.schema
        XCTAssertEqual(block.slot("W1"), 3)
        XCTAssertEqual(block.slot("W2"), 5)
        XCTAssertEqual(block.arity, 7...9)
        XCTAssertEqual(OpType.head.schema.arity, 1...7)
        XCTAssertEqual(OpType.concat.schema.arity.lowerBound, 1)
        XCTAssertEqual(OpType.concat.schema.arity.upperBound, Int.max)
        let node = Node(name: "b", op: .block, inputs: ["x", "dw", "dwb", "w1", "b1", "w2", "b2", "", ""], outputs: ["y"])
        XCTAssertEqual(node.input("W2"), "w2")
        XCTAssertNil(node.input("grn_gamma"))
    }
}

/// The table agrees with the format's own document, Formats/CNX.md: the ONNX operators' input
/// counts and attributes, the fused operations' slot names, order and element types.
final class OpSchemaSpecTests: XCTestCase {
    private func spec() throws -> [Substring] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Formats/CNX.md").standardized
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
    }

    private func cells(_ line: Substring) -> [String] {
        line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
            .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "") }
    }

    func testONNXOperatorsAsTheSpecListsThem() throws {
        let lines = try spec()
        let start = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("| op type | inputs | attributes |") })
        var seen = 0
        for line in lines[(start + 2)...] {
            guard line.hasPrefix("|") else { break }
            let c = cells(line)
            let op = try XCTUnwrap(OpType(rawValue: c[0]), "the spec lists \(c[0]), which the table lacks")
            let arity = op.schema.arity
            let expected: String
            if arity.upperBound == Int.max {
                expected = "\(arity.lowerBound) or more"
            } else if arity.lowerBound == arity.upperBound {
                expected = "\(arity.lowerBound)"
            } else {
                expected = "\(arity.lowerBound)-\(arity.upperBound)"
            }
            XCTAssertEqual(c[1], expected, c[0])
            let attributes = c[2] == "none" ? [] : c[2].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for a in attributes { XCTAssertNotNil(op.schema.attribute(a), "\(c[0]): the spec lists attribute '\(a)', the schema does not") }
            seen += 1
        }
        XCTAssertEqual(seen, OpType.allCases.filter { !$0.isFused && $0 != .constant }.count)
    }

    func testFusedOperationSlotsAsTheSpecListsThem() throws {
        let lines = try spec()
        var checked: Set<OpType> = []
        for (i, line) in lines.enumerated() where line.hasPrefix("### `cnx.") {
            let name = String(line.dropFirst(5).prefix { $0 != "`" })
            let op = try XCTUnwrap(OpType(rawValue: name), name)
            guard let header = lines[i...].firstIndex(where: { $0.hasPrefix("| slot | input |") }) else { continue }
            var slots: [(String, [String])] = []
            for row in lines[(header + 2)...] {
                guard row.hasPrefix("|") else { break }
                let c = cells(row)
                slots.append((c[1], c[3].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }))
            }
            let schema = op.schema
            XCTAssertEqual(schema.inputs.map(\.name), slots.map(\.0), name)
            for (slot, (_, dtypes)) in zip(schema.inputs, slots) {
                XCTAssertEqual(slot.dtypes?.map(\.name), dtypes, "\(name) slot \(slot.name)")
            }
            checked.insert(op)
        }
        XCTAssertEqual(checked, Set(OpType.allCases.filter(\.isFused)))
    }
}
