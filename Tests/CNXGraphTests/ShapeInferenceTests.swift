import CNXGraph
import CNXImport
import CNXTestSupport
import XCTest

final class ShapeInferenceTests: XCTestCase {
    /// Every fixture's output shape follows from its input shape, symbols included: the batch
    /// symbol survives Shape/Gather/Concat/Reshape chains and Flatten.
    func testOutputShapesOfEveryFixture() throws {
        for entry in try Fixtures.manifest() {
            let graph = try ONNXReader.load(path: entry.model)
            let facts = try Verifier.verify(graph)
            let out = try XCTUnwrap(facts[graph.outputs[0].name]?.shape, entry.name)
            XCTAssertEqual(out.count, 2, entry.name)
            XCTAssertEqual(out.last, .fixed(entry.num_classes), entry.name)
            let batch = try XCTUnwrap(graph.inputs[0].shape?.first)
            XCTAssertEqual(out.first, batch, "\(entry.name): \(describe(out))")
        }
    }

    /// Symbolic height and width shrink through the strided convolutions: H/4 after the stem.
    func testSymbolicHeightThroughStem() throws {
        let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.dynamic_hw })
        let graph = try ONNXReader.load(path: entry.model)
        let facts = try ShapeInference.infer(graph)
        let stem = try XCTUnwrap(graph.nodes.first { $0.op == .conv })
        let shape = try XCTUnwrap(facts[stem.outputs[0]]?.shape)
        let h = try XCTUnwrap(graph.inputs[0].shape?[2])
        XCTAssertEqual(shape[2], h.scaled(1, 4), describe(shape))
        XCTAssertEqual(shape[1], .fixed(entry.dims[0]))
        // The last stage runs at H/32.
        let lastConv = try XCTUnwrap(graph.nodes.last { $0.op == .conv })
        XCTAssertEqual(facts[lastConv.outputs[0]]?.shape?[2], h.scaled(1, 32))
    }

    func testVerifierNamesTheNodeThatReadsAnUndefinedValue() throws {
        let x = ValueInfo(name: "x", dtype: .float32, shape: [.fixed(1), .fixed(4)])
        let graph = Graph(
            inputs: [x], outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [Node(name: "adder", op: .add, inputs: ["x", "ghost"], outputs: ["y"])],
            initializers: [:])
        XCTAssertThrowsError(try Verifier.verify(graph)) { error in
            XCTAssertTrue("\(error)".contains("adder") && "\(error)".contains("ghost"), "\(error)")
        }
    }

    func testVerifierRejectsInconsistentShapes() throws {
        let x = ValueInfo(name: "x", dtype: .float32, shape: [.fixed(2), .fixed(3)])
        let graph = Graph(
            inputs: [x], outputs: [ValueInfo(name: "y", dtype: .float32, shape: nil)],
            nodes: [Node(name: "mm", op: .matMul, inputs: ["x", "w"], outputs: ["y"])],
            initializers: ["w": Tensor(zeros: .float32, shape: [4, 5])])
        XCTAssertThrowsError(try Verifier.verify(graph)) { error in
            XCTAssertTrue("\(error)".contains("mm"), "\(error)")
        }
    }

    func testArchitectureOfEveryFixture() throws {
        for entry in try Fixtures.manifest() {
            let a = try XCTUnwrap(Architecture.recognise(try ONNXReader.load(path: entry.model)), entry.name)
            XCTAssertEqual(a.depths, entry.depths, entry.name)
            XCTAssertEqual(a.dims, entry.dims, entry.name)
            XCTAssertEqual(a.classes, entry.num_classes, entry.name)
            XCTAssertEqual(a.grn, entry.family.contains("v2"), entry.name)
        }
    }
}
