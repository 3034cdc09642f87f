import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXRuntime
import CNXTestSupport
import XCTest

final class QuantizeFixtureTests: XCTestCase {
    func testInt8CloseToFloatOnEveryFamily() throws {
        for entry in try Fixtures.manifest()
        where ["timm_linear_op17", "v2_op17", "reference_op13", "timm_convmlp_op17", "torchvision_dynamo"].contains(entry.name) {
            var graph = try ONNXReader.load(path: entry.model)
            _ = try Pipeline.standard.run(&graph)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            // Calibrate on noise drawn like the test input (standard normal): the fixtures have
            // no data of their own.
            let calib = gaussian([16] + Array(x.shape.dropFirst()), seed: 11)
            for method in CalibrationMethod.allCases {
                var options = Quantizer.Options()
                options.method = method
                let q = try Quantizer.quantize(graph, calibration: calib, options: options)
                XCTAssertTrue(q.graph.initializers.values.contains { $0.dtype == .int8 })
                let f = try Model(graph: graph).predict(x), y = try Model(graph: q.graph).predict(x)
                let sqnr = OutputError.sqnr(y, f)
                print("\(entry.name) \(method): SQNR \(String(format: "%.1f", sqnr)) dB")
                // Tiny random models are a hard case for 8 bits (a handful of channels per layer);
                // a broken int8 path gives ~0 dB. The accuracy targets are checked on trained models.
                XCTAssertGreaterThan(sqnr, method == .entropy ? 12 : 20, "\(entry.name) \(method)")
            }
        }
    }
}

/// Standard normal samples (Box–Muller over a fixed-seed generator).
func gaussian(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    func uniform() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return (Double(state >> 11) + 0.5) / Double(1 << 53)
    }
    let count = shape.reduce(1, *)
    var values = [Float]()
    values.reserveCapacity(count + 1)
    while values.count < count {
        let r = (-2 * log(uniform())).squareRoot(), t = 2 * Double.pi * uniform()
        values.append(Float(r * cos(t)))
        values.append(Float(r * sin(t)))
    }
    return Tensor(floats: Array(values.prefix(count)), shape: shape)
}
