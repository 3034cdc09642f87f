import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// The fast int8 path (VNNI kernels, fused epilogues) computes what the reference int8
/// arithmetic computes, up to a u8 rounding step at a few boundaries.
final class Int8RuntimeTests: XCTestCase {
    func testFastInt8MatchesReferenceInt8() throws {
        for name in ["timm_linear_op17", "v2_op17", "reference_op13"] {
            let entry = try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
            var graph = try ONNXReader.load(path: entry.model)
            _ = try Pipeline.standard.run(&graph)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            let q = try Quantizer.quantize(graph, calibration: gaussian([8] + Array(x.shape.dropFirst()), seed: 5))
            let reference = try ReferenceExecutor(graph: q.graph).run([q.graph.inputs[0].name: x])[q.graph.outputs[0].name]!
            let fast = try Model(graph: q.graph, threads: 2).predict(x)
            let float = try Model(graph: graph).predict(x)
            print("\(name): fast vs reference int8 SQNR \(OutputError.sqnr(fast, reference)) dB; int8 vs float \(OutputError.sqnr(reference, float)) dB")
            XCTAssertGreaterThan(OutputError.sqnr(fast, reference), 30, name)
        }
    }
}
