import CNXFormat
import CNXGraph
import CNXIO
import CNXReference
import CNXRuntime
import CNXTestSupport
import Foundation
import XCTest

/// The rule for int8 files written before format 1.2 (Formats/CNX.md, "Reading 1.0 and 1.1 int8
/// files"): they are read, their `w<L>_scales` attributes taken as the weights' scales, and they
/// compute what the program that wrote them computed. `Fixtures/cnx/int8_v1_0.cnx` was written by
/// convnext-convert 0.2.0 (`Fixtures/cnx/make_int8_v1_0.sh`).
final class LegacyInt8FileTests: XCTestCase {
    var fixture: String { Fixtures.root.appendingPathComponent("Fixtures/cnx/int8_v1_0.cnx").path }

    func input() throws -> Tensor {
        try NPY.read(path: Fixtures.root.appendingPathComponent("Fixtures/families/convnextv2_atto_op17/input.npy").path)
    }

    func testTheFixtureIsA10FileWithScalesAsAttributes() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: fixture))
        XCTAssertEqual(Array(bytes[4..<8]), [1, 0, 0, 0], "version 1.0")
        let file = try CNXReader.load(path: fixture)
        let int8 = file.graph.initializers.values.filter { $0.dtype == .int8 }
        XCTAssertEqual(int8.count, 13)
        XCTAssertTrue(int8.allSatisfy { $0.quantization == nil }, "a 1.0 file has no quantization in its tensor table")
        XCTAssertTrue(file.graph.nodes.contains { $0.attributes["w1_scales"] != nil })
        XCTAssertTrue(file.graph.nodes.contains { $0.attributes["a1_channel_scales"] != nil }, "1.1 attributes under the number 1.0")
    }

    /// The 1.0 file computes exactly what 0.2.0 computed, and stays within the int8 error of
    /// ONNX Runtime's float32 output (41.1 dB when it was made).
    func testA10Int8FileComputesWhatItsWriterComputed() throws {
        let model = try Model(path: fixture, threads: 2)
        let y = try model.predict(try input())
        let written = try NPY.read(path: Fixtures.root.appendingPathComponent("Fixtures/cnx/int8_v1_0.output-0.2.0.npy").path)
        XCTAssertEqual(y.shape, written.shape)
        XCTAssertEqual(y.floats, written.floats, "the output of convnext-convert 0.2.0, bit for bit")
        let ort = try NPY.read(path: Fixtures.root.appendingPathComponent("Fixtures/families/convnextv2_atto_op17/ort_expected.npy").path)
        XCTAssertGreaterThan(sqnr(y.floats, ort.floats), 38, "int8 against ONNX Runtime's float32")
        // Its payloads say int8 with the attribute's scales.
        let blocks = model.graph.nodes.filter { $0.op == .block }
        for b in blocks {
            guard case .block(let p) = try FusedPayload(b, in: model.graph), case .int8(let q) = p.pw1.precision else {
                return XCTFail("\(b.name): not an int8 block")
            }
            guard case .tensor(let w)? = b.attributes["w1_scales"] else { return XCTFail(b.name) }
            XCTAssertEqual(q.weightScales, w.floats, b.name)
        }
    }

    /// Written back, it is a 1.2 file: the scales in the tensor table, no `w<L>_scales`, the
    /// same output bit for bit.
    func testA10Int8FileWrittenBackIsA12FileThatComputesTheSame() throws {
        var file = try CNXReader.load(path: fixture)
        FusedPayload.upgrade(&file.graph)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-legacy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("upgraded.cnx").path
        try CNXWriter.write(file, to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(Array(bytes[4..<8]), [1, 0, 2, 0], "version 1.2")
        let upgraded = try CNXReader.load(path: path)
        XCTAssertFalse(upgraded.graph.nodes.contains { $0.attributes.keys.contains { $0.hasPrefix("w") && $0.hasSuffix("_scales") } })
        let int8 = upgraded.graph.initializers.values.filter { $0.dtype == .int8 }
        XCTAssertEqual(int8.count, 13)
        XCTAssertTrue(int8.allSatisfy { $0.quantization?.axis == 1 && $0.quantization?.scales.count == $0.shape[1] })
        let x = try input()
        XCTAssertEqual(
            try Model(graph: upgraded.graph, threads: 2).predict(x).floats, try Model(path: fixture, threads: 2).predict(x).floats)
    }

    /// A 1.0 int8 file whose scales attribute is gone is refused, naming the node and the layer.
    func testA10Int8LayerWithoutItsScalesIsRefused() throws {
        var file = try CNXReader.load(path: fixture)
        let i = try XCTUnwrap(file.graph.nodes.firstIndex { $0.op == .block })
        file.graph.nodes[i].attributes["w2_scales"] = nil
        XCTAssertThrowsError(try Model(graph: file.graph)) { e in
            let message = (e as? CNXError)?.message ?? "\(e)"
            XCTAssertTrue(message.contains(file.graph.nodes[i].name) && message.contains("int8 pointwise layer 2"), message)
        }
    }

    func sqnr(_ x: [Float], _ ref: [Float]) -> Double {
        var signal = 0.0, noise = 0.0
        for (a, b) in zip(x, ref) { signal += Double(b) * Double(b); noise += Double(a - b) * Double(a - b) }
        return 10 * log10(signal / max(noise, .leastNonzeroMagnitude))
    }
}
