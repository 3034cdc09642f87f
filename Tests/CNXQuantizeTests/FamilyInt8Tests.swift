import CNXConvert
import CNXGraph
import CNXImport
import CNXPasses
import CNXQuantize
import CNXRuntime
import CNXTestSupport
import XCTest

/// Every ConvNeXt family (Fixtures/families) converts to a `.cnx` that the runtime runs to
/// PyTorch's answer, and quantizes to int8 with its activation and norm kind carried through.
final class FamilyInt8Tests: XCTestCase {
    /// ONNX -> passes -> .cnx on disk -> runtime, against PyTorch.
    func testEveryFamilyConvertsToAFileThatMatchesPyTorch() throws {
        let tmp = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        for entry in try FamilyFixtures.manifest() {
            let path = tmp.appendingPathComponent("\(entry.name).cnx").path
            var options = Converter.Options()
            options.log = { _ in }
            let report = try Converter.convert(input: entry.onnx, output: path, options: options)
            let model = try Model(path: path, threads: 2)
            XCTAssertTrue(model.graph.nodes.allSatisfy { [.stem, .downsample, .block, .head].contains($0.op) }, "\(entry.name): \(model.graph.opHistogram)")
            for c in entry.cases {
                let x = try NPY.read(path: entry.path(c.input)), expected = try NPY.read(path: entry.path(c.expected))
                let y = try model.predict(x)
                let err = relativeError(y.floats, expected.floats)
                XCTAssertLessThanOrEqual(err, 1e-5, "\(entry.name): the .cnx is \(err) off PyTorch")
                let cols = expected.shape.last ?? 1
                XCTAssertEqual(argmaxRows(y.floats, cols: cols), argmaxRows(expected.floats, cols: cols), "\(entry.name) top-1")
            }
            XCTAssertEqual(report.nodesAfter, model.graph.nodes.count, entry.name)
        }
    }

    /// int8 against float32 on random inputs (8 images; calibrated on 64 others drawn alike,
    /// standard normal, as the fixtures' own inputs): at least 30 dB for every family.
    func testEveryFamilyQuantizesToInt8() throws {
        for entry in try FamilyFixtures.manifest() {
            var graph = try ONNXReader.load(path: entry.onnx)
            _ = try Pipeline.standard.run(&graph)
            let x = try NPY.read(path: entry.path(entry.cases[0].input))
            let shape = Array(x.shape.dropFirst())
            let calib = gaussian([64] + shape, seed: 21)
            let q = try Quantizer.quantize(graph, calibration: calib, options: Quantizer.Options())
            let int8Layers = q.graph.initializers.values.filter { $0.dtype == .int8 }.count
            XCTAssertGreaterThan(int8Layers, 0, entry.name)
            // The activation and norm of every fused op survive the lowering.
            XCTAssertEqual(graph.nodes.map(\.op), q.graph.nodes.map(\.op), entry.name)
            for (a, b) in zip(graph.nodes, q.graph.nodes) {
                XCTAssertEqual(a.string("activation"), b.string("activation"), entry.name)
                XCTAssertEqual(a.string("norm"), b.string("norm"), entry.name)
            }
            let test = gaussian([8] + shape, seed: 99)
            let f = try predict(Model(graph: graph, threads: 2), test), y = try predict(Model(graph: q.graph, threads: 2), test)
            let sqnr = OutputError.sqnr(y, f)
            print(String(format: "int8 %@: %d int8 layers, SQNR %.1f dB", entry.name, int8Layers, sqnr))
            XCTAssertGreaterThanOrEqual(sqnr, 30, entry.name)
        }
    }

    /// The model's outputs for every image of `x`, in the batch size the model takes.
    func predict(_ model: Model, _ x: Tensor) throws -> Tensor {
        let batch = model.graph.inputs[0].shape?.first?.value ?? x.shape[0]
        let per = x.count / x.shape[0]
        var values: [Float] = []
        var cols = 0
        for start in stride(from: 0, to: x.shape[0] - batch + 1, by: batch) {
            let chunk = Tensor(zeros: .float32, shape: [batch] + Array(x.shape.dropFirst()))
            chunk.floatPointer.update(from: x.floatPointer + start * per, count: batch * per)
            let y = try model.predict(chunk)
            cols = y.shape.last ?? 1
            values += y.floats
        }
        return Tensor(floats: values, shape: [values.count / max(cols, 1), cols])
    }
}
