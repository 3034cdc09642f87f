import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// `FusedPayload`, the one reader and writer of the fused operations' slots and attributes.
final class FusedPayloadTests: XCTestCase {
    /// A converted and quantized family fixture: every fused op, float32 and int8 layers, GRN,
    /// channel scales.
    func quantizedGraph() throws -> Graph {
        let dir = Fixtures.root.appendingPathComponent("Fixtures/families/convnextv2_atto_op17")
        var graph = try ONNXReader.load(path: dir.appendingPathComponent("model.onnx").path)
        _ = try Pipeline.standard.run(&graph)
        let x = try NPY.read(path: dir.appendingPathComponent("input.npy").path)
        var options = Quantizer.Options()
        options.quantizeHead = true
        return try Quantizer.quantize(graph, calibration: x, options: options).graph
    }

    /// Read and written back, every node is unchanged: same inputs, same attributes.
    func testEveryFusedNodeRoundTrips() throws {
        let graph = try quantizedGraph()
        var kinds = Set<String>()
        for node in graph.nodes where FusedPayload.describes(node.op) {
            let payload = try FusedPayload(node, in: graph)
            var written = Node(name: node.name, op: node.op, inputs: [node.inputs[0]], outputs: node.outputs, attributes: [:])
            // Attributes the payload leaves at their defaults are written only when the node had them.
            written.attributes = node.attributes
            payload.write(into: &written)
            XCTAssertEqual(written.inputs, node.inputs, node.name)
            XCTAssertEqual(Set(written.attributes.keys), Set(node.attributes.keys), node.name)
            for (number, layer) in payload.layers { kinds.insert("\(node.op.rawValue) \(number) \(layer.precision.name)") }
            XCTAssertTrue(payload.constants.keys.allSatisfy { graph.initializers[$0] != nil }, node.name)
        }
        XCTAssertTrue(
            kinds.isSuperset(of: [
                "cnx.Block 1 int8", "cnx.Block 2 int8", "cnx.Downsample 1 int8", "cnx.Stem 1 bfloat16", "cnx.Head 1 int8",
            ]
            ), "\(kinds)")
    }

    func testWhatThePayloadCannotReadIsRefusedNamingTheNode() throws {
        let graph = try quantizedGraph()
        let i = try XCTUnwrap(graph.nodes.firstIndex { $0.op == .block })
        func refusal(_ edit: (inout Graph) -> Void) -> String {
            var g = graph
            edit(&g)
            do { _ = try Model(graph: g); return "accepted" } catch { return (error as? CNXError)?.message ?? "\(error)" }
        }
        let name = graph.nodes[i].name
        var m = refusal { $0.nodes[i].attributes["a3_scale"] = .float(1) }
        XCTAssertTrue(m.contains(name) && m.contains("attribute 'a3_scale' is not one this reader knows"), m)
        m = refusal { $0.initializers[$0.nodes[i].inputs[5]]?.quantization = nil }
        XCTAssertTrue(m.contains(name) && m.contains("int8 pointwise layer 2") && m.contains("no per-channel scales"), m)
        m = refusal { $0.nodes[i].attributes["a1_zero"] = .int(300) }
        XCTAssertTrue(m.contains(name) && m.contains("a1_zero"), m)
        m = refusal { $0.nodes[i].attributes["activation"] = .string("relu6") }
        XCTAssertTrue(m.contains(name) && m.contains("unknown activation 'relu6'"), m)
        m = refusal { $0.initializers[$0.nodes[i].inputs[3]]?.quantization?.zeroPoints = [Int32](repeating: 1, count: 32) }
        XCTAssertTrue(m.contains(name) && m.contains("zero points must be 0"), m)
    }
}
