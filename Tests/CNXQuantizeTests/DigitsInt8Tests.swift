import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXQuantize
import CNXRuntime
import CNXTestSupport
import XCTest

/// int8 on a ConvNeXt trained on real data (the bundled digits model): accuracy within half a
/// point of float32, top-1 agreement with float32 at least 99%, for every calibration method.
final class DigitsInt8Tests: XCTestCase {
    func top1(_ logits: Tensor) -> [Int] { argmaxRows(logits.floats, cols: logits.shape.last ?? 1) }

    func testInt8KeepsTheDigitsAccuracy() throws {
        let dir = Fixtures.root.appendingPathComponent("Fixtures/digits")
        var graph = try ONNXReader.load(path: dir.appendingPathComponent("model.onnx").path)
        _ = try Pipeline.standard.run(&graph)
        let calibration = try NPY.read(path: dir.appendingPathComponent("calib.npy").path)
        let test = try NPY.read(path: dir.appendingPathComponent("test.npy").path)
        let labels = try NPY.read(path: dir.appendingPathComponent("test_labels.npy").path).int64s.map { Int($0) }
        let floatTop = top1(try Model(graph: graph).predict(test))
        let floatAccuracy = Double(zip(floatTop, labels).filter { $0 == $1 }.count) / Double(labels.count)
        XCTAssertGreaterThan(floatAccuracy, 0.9, "the bundled model is trained")
        for method in CalibrationMethod.allCases {
            var options = Quantizer.Options()
            options.method = method
            let q = try Quantizer.quantize(graph, calibration: calibration, options: options)
            let top = top1(try Model(graph: q.graph).predict(test))
            let accuracy = Double(zip(top, labels).filter { $0 == $1 }.count) / Double(labels.count)
            let agreement = Double(zip(top, floatTop).filter { $0 == $1 }.count) / Double(labels.count)
            print(
                String(
                    format: "digits int8 %@: accuracy %.2f%% (float32 %.2f%%), agreement %.2f%%", method.rawValue, accuracy * 100,
                    floatAccuracy * 100, agreement * 100))
            XCTAssertGreaterThanOrEqual(accuracy, floatAccuracy - 0.005, method.rawValue)
            XCTAssertGreaterThanOrEqual(agreement, 0.99, method.rawValue)
        }
    }
}
