import CNXConvert
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

/// Each step of `Converter.convert` on its own (load, probe, optimise, verify, select outputs,
/// quantize, write), checked against ONNX Runtime's outputs saved with the fixtures.
final class ConverterStepsTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-steps-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: folder)
    }

    func entry(_ name: String = "timm_linear_op17") throws -> Fixtures.Entry {
        try XCTUnwrap(try Fixtures.manifest().first { $0.name == name })
    }

    /// The fixture's first test input and ONNX Runtime's output for it.
    func oracle(_ e: Fixtures.Entry) throws -> (input: Tensor, expected: Tensor) {
        (try NPY.read(path: e.path(e.cases[0].input)), try NPY.read(path: e.path(e.cases[0].expected)))
    }

    /// A copy of `t` with one element moved by `delta`.
    func nudged(_ t: Tensor, by delta: Float, at i: Int = 0) -> Tensor {
        let c = t.copy()
        c.withUnsafeMutableFloats { $0[i] += delta }
        return c
    }

    var backbone: String { Fixtures.root.appendingPathComponent("Fixtures/backbone/classifier.onnx").path }

    func testRelativeErrorIsTheLargestDifferenceOverTheLargestMagnitude() {
        let e = Tensor(floats: [1, -4, 2], shape: [3])
        XCTAssertEqual(Converter.relativeError(Tensor(floats: [1, -4, 2], shape: [3]), e), 0)
        XCTAssertEqual(Converter.relativeError(Tensor(floats: [1.5, -4, 1], shape: [3]), e), 0.25)
        // An all-zero expectation: the absolute difference.
        XCTAssertEqual(Converter.relativeError(Tensor(floats: [0, 0.5], shape: [2]), Tensor(floats: [0, 0], shape: [2])), 0.5)
        XCTAssertEqual(Converter.tolerance, 1e-4)
    }

    func testLoadReadsTheModelAndChecksItAgainstAReferenceExport() throws {
        let e = try entry()
        var options = Converter.Options()
        let plain = try Converter.load(e.model, options: options)
        XCTAssertEqual(plain.model.format, "onnx")
        XCTAssertNil(plain.referenceError)
        options.referenceONNX = e.model
        let checked = try Converter.load(e.model, options: options)
        XCTAssertEqual(try XCTUnwrap(checked.referenceError), 0)
        // Another model as the "reference": refused, naming the export.
        options.referenceONNX = try entry("v2_op17").model
        XCTAssertThrowsError(try Converter.load(e.model, options: options)) { error in
            XCTAssertTrue("\(error)".contains("v2_op17"), "\(error)")
        }
        XCTAssertThrowsError(try Converter.load(folder.appendingPathComponent("none.onnx").path, options: Converter.Options()))
    }

    func testProbeIsTheReaderGraphsAnswer() throws {
        let graph = try ONNXReader.load(path: try entry().model)
        let probe = try Converter.Probe(graph, features: nil, input: "m")
        XCTAssertEqual(probe.input.shape, Converter.sampleShape(graph.inputs[0]))
        XCTAssertNil(probe.stages)
        let again = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: probe.input])
        XCTAssertEqual(probe.outputs.map(\.floats), [try XCTUnwrap(again[graph.outputs[0].name]).floats])
        // With features: the tensors at the end of the chosen stages, channels as the stages'.
        let b = try ONNXReader.load(path: backbone)
        let stages = try XCTUnwrap(try Converter.Probe(b, features: [1, 3], input: "b").stages)
        XCTAssertEqual(stages.map { $0.shape[1] }, [16, 32])
    }

    func testOptimisedGraphVerifiesAgainstONNXRuntime() throws {
        let e = try entry()
        var graph = try ONNXReader.load(path: e.model)
        let before = graph.nodes.count
        let steps = try Converter.optimise(&graph, input: e.model, options: Converter.Options())
        XCTAssertLessThan(graph.nodes.count, before)
        XCTAssertTrue(steps.contains { $0.pass == "fuse-blocks" && $0.rewrites > 0 }, "\(steps.map(\.pass))")
        let (x, y) = try oracle(e)
        let error = try Converter.verify(graph, on: x, expected: [y], input: e.model, what: "the optimised graph")
        XCTAssertLessThanOrEqual(error, Converter.tolerance)
    }

    func testVerifyRefusesAGraphThatDiffers() throws {
        let e = try entry()
        var graph = try ONNXReader.load(path: e.model)
        _ = try Converter.optimise(&graph, input: e.model, options: Converter.Options())
        let (x, y) = try oracle(e)
        // The expectation moved by 1% of its largest magnitude at one element.
        let scale = y.floats.map(abs).max() ?? 1
        XCTAssertThrowsError(
            try Converter.verify(graph, on: x, expected: [nudged(y, by: scale / 100)], input: "m.onnx", what: "the optimised graph")
        ) { error in
            let message = "\(error)", prefix = "m.onnx: the optimised graph differs from the original by a relative error of "
            XCTAssertTrue(message.hasPrefix(prefix), message)
            // 1% of the largest magnitude, give or take float rounding.
            let figure = Float(message.dropFirst(prefix.count).prefix { $0 != " " }) ?? 0
            XCTAssertEqual(figure, 0.01, accuracy: 1e-5, message)
            XCTAssertTrue("\(error)".contains("--no-verify"), "\(error)")
        }
        // A weight changed after the probe: the graph no longer computes the reader's answer.
        // The largest float32 weight (ties by name), so the choice does not follow a dictionary's
        // order from run to run.
        let name = try XCTUnwrap(
            graph.initializers.filter { $0.value.dtype == .float32 }
                .max { ($0.value.count, $1.key) < ($1.value.count, $0.key) }?.key)
        let w = try XCTUnwrap(graph.initializers[name])
        graph.initializers[name] = nudged(w, by: 10)
        XCTAssertThrowsError(try Converter.verify(graph, on: x, expected: [y], input: "m.onnx", what: "the optimised graph"))
    }

    func testSelectOutputsKeepsTheChosenStagesWhichVerifyAgainstTheOriginal() throws {
        var graph = try ONNXReader.load(path: backbone)
        let probe = try Converter.Probe(graph, features: [0, 2], input: backbone)
        _ = try Converter.optimise(&graph, input: backbone, options: Converter.Options())
        try Converter.selectOutputs(&graph, features: [0, 2], input: backbone)
        XCTAssertEqual(graph.outputs.map(\.name), ["stage0", "stage2"])
        let error = try Converter.verify(
            graph, on: probe.input, expected: try XCTUnwrap(probe.stages), input: backbone, what: "the stage outputs")
        XCTAssertLessThanOrEqual(error, Converter.tolerance)
        XCTAssertThrowsError(try Converter.selectOutputs(&graph, features: [7], input: backbone))
    }

    /// `--features` compares the written backbone's stage outputs with the original graph's
    /// (before, that path computed the original's answer and compared nothing with it).
    func testAFeaturesConversionIsVerifiedOnItsStageOutputs() throws {
        var options = Converter.Options()
        options.features = [1, 3]
        options.log = { _ in }
        let out = folder.appendingPathComponent("bb.cnx").path
        let r = try Converter.convert(input: backbone, output: out, options: options)
        XCTAssertLessThanOrEqual(try XCTUnwrap(r.verificationError), Converter.tolerance)
        XCTAssertEqual(r.verifiedAgainst, "the original's stage outputs on a random input")
        XCTAssertEqual(r.outputs.map(\.name), ["stage1", "stage3"])
        options.verify = false
        let unchecked = try Converter.convert(input: backbone, output: out, options: options)
        XCTAssertNil(unchecked.verificationError)
    }

    func testQuantizeMakesInt8CloseToFloatAndRefusesItTwice() throws {
        let e = try entry()
        var graph = try ONNXReader.load(path: e.model)
        _ = try Converter.optimise(&graph, input: e.model, options: Converter.Options())
        let (x, _) = try oracle(e)
        let calibration = Converter.randomTensor([8] + Array(x.shape.dropFirst()), seed: 3)
        let q = try Converter.quantize(graph, calibration: calibration, options: Quantizer.Options(), input: "m")
        XCTAssertTrue(q.graph.initializers.values.contains { $0.dtype == .int8 })
        XCTAssertGreaterThan(q.sqnr, 15)
        XCTAssertFalse(q.metadata.isEmpty)
        XCTAssertThrowsError(try Converter.quantize(q.graph, calibration: calibration, options: Quantizer.Options(), input: "m")) { error in
            XCTAssertEqual("\(error)", "m: the model is already quantized")
        }
    }

    func testWriteChecksTheFileOnTheRuntimeBeforePuttingItInPlace() throws {
        let e = try entry()
        var graph = try ONNXReader.load(path: e.model)
        _ = try Converter.optimise(&graph, input: e.model, options: Converter.Options())
        let (x, y) = try oracle(e)
        let model = CNXModel(graph: graph, metadata: [:])
        let out = folder.appendingPathComponent("m.cnx").path
        // Against ONNX Runtime's answer: written.
        let error = try XCTUnwrap(try Converter.write(model, to: out, checkingOn: (x, [y]), input: e.model))
        XCTAssertLessThanOrEqual(error, Converter.tolerance)
        let written = try Model(path: out)
        XCTAssertLessThanOrEqual(relativeError(try written.predict(x).floats, y.floats), Converter.tolerance)
        // Against a wrong answer: refused, nothing written, no staging file left.
        let refused = folder.appendingPathComponent("refused.cnx").path
        let scale = y.floats.map(abs).max() ?? 1
        XCTAssertThrowsError(try Converter.write(model, to: refused, checkingOn: (x, [nudged(y, by: scale)]), input: e.model)) { error in
            XCTAssertTrue("\(error)".contains("the converted model differs from the original"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["m.cnx"])
        // Without a check: written as it is.
        XCTAssertNil(try Converter.write(model, to: refused, checkingOn: nil, input: e.model))
        XCTAssertTrue(FileManager.default.fileExists(atPath: refused))
    }
}
