import CNXGraph
import CNXImport
import CNXPasses
import CNXQuantize
import CNXRuntime
import CNXTestSupport
import XCTest

final class QuantizeFixtureTests: XCTestCase {
    func testInt8CloseToFloatOnEveryFamily() throws {
        for entry in try Fixtures.manifest() where ["timm_linear_op17", "v2_op17", "reference_op13", "timm_convmlp_op17", "torchvision_dynamo"].contains(entry.name) {
            var graph = try ONNXReader.load(path: entry.model)
            _ = try Pipeline.standard.run(&graph)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            // Calibrate on noise like the test input (the fixtures have no data of their own).
            var samples = [Float]()
            for s in 0..<16 { samples += Converter_random(x.shape.dropFirst().reduce(1, *), seed: UInt64(s + 1)) }
            let calib = Tensor(floats: samples, shape: [16] + Array(x.shape.dropFirst()))
            for method in CalibrationMethod.allCases {
                var options = Quantizer.Options()
                options.method = method
                let q = try Quantizer.quantize(graph, calibration: calib, options: options)
                XCTAssertTrue(q.graph.initializers.values.contains { $0.dtype == .int8 })
                let f = try Model(graph: graph).predict(x), y = try Model(graph: q.graph).predict(x)
                let sqnr = OutputError.sqnr(y, f)
                print("\(entry.name) \(method): SQNR \(String(format: "%.1f", sqnr)) dB")
                XCTAssertGreaterThan(sqnr, 20, "\(entry.name) \(method)")
            }
        }
    }
}

func Converter_random(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 4000) / 1000
    }
}
