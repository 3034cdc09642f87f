import CNXConvert
import CNXGraph
import CNXImport
import CNXPasses
import CNXRuntime
import CNXTestSupport
import XCTest

/// transformers' `ConvNextV2Backbone` (Fixtures/checkpoints/hf_convnextv2_backbone: out_features
/// stem, stage2, stage4, each through its `hidden_states_norms` LayerNorm), from the ONNX export
/// and every checkpoint form: nothing but fused operations after the pipeline, every output on
/// the fast runtime as transformers computed it, and int8 within 30 dB of float32.
final class TransformersBackboneTests: XCTestCase {
    func forms() throws -> (Families.Entry, [(path: String, options: CheckpointOptions)]) {
        let e = try Families.entry("hf_convnextv2_backbone")
        var forms = try e.forms.map { (path: e.path($0.path), options: try Families.options($0.flags)) }
        forms.append((e.path("model.onnx"), CheckpointOptions()))
        return (e, forms)
    }

    func testEveryFormFusesCompletelyAndMatchesTransformers() throws {
        let (e, forms) = try forms()
        let x = try NPY.read(path: e.path("input.npy"))
        for (path, options) in forms {
            let label = URL(fileURLWithPath: path).lastPathComponent
            var graph = try ModelLoader.load(path, options: options).graph
            _ = try Pipeline.standard.run(&graph)
            // One stem, the three downsamples, the four blocks, and the three maps handed out
            // (each through its norm): nothing on the reference kernels.
            XCTAssertEqual(graph.nodes.map(\.op), [OpType.stem, .block, .downsample, .block, .downsample, .block, .downsample, .block,
                                                   .features, .features, .features], "\(label): \(graph.opHistogram)")
            let features = graph.nodes.filter { $0.op == .features }
            XCTAssertEqual(features.map { $0.string("norm") }, ["layer", "layer", "layer"], label)
            XCTAssertEqual(features.map { $0.inputs.count }, [3, 3, 3], "\(label): each output norm keeps its weight and bias")
            XCTAssertEqual(graph.outputs.map(\.name), e.outputs, label)
            let outputs = try Model(graph: graph, threads: 2).predictAll([graph.inputs[0].name: x])
            for name in e.outputs {
                let y = try XCTUnwrap(outputs[name], "\(label) \(name)"), expected = try e.expected(name)
                XCTAssertEqual(y.shape, expected.shape, "\(label) \(name)")
                let err = relativeError(y.floats, expected.floats)
                print(String(format: "hf backbone %@ %@: %.1e off transformers", label, name, err))
                XCTAssertLessThanOrEqual(err, 1e-5, "\(label) \(name)")
            }
        }
    }

    /// `quantize --int8` of the save_pretrained folder and of the ONNX export: every output of
    /// the int8 model against the float32 one on random inputs, SQNR at least 30 dB.
    func testQuantizesToInt8() throws {
        let (e, _) = try forms()
        let tmp = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let calibration = tmp.appendingPathComponent("calibration.npy").path
        try NPY.write(normalSamples([32, 3, 64, 64], seed: 5), path: calibration)
        let test = normalSamples([8, 3, 64, 64], seed: 77)
        for source in ["hf", "model.onnx"] {
            let float = tmp.appendingPathComponent("float.cnx").path, int8 = tmp.appendingPathComponent("int8.cnx").path
            try? FileManager.default.removeItem(atPath: float)
            try? FileManager.default.removeItem(atPath: int8)
            XCTAssertEqual(try runTool([e.path(source), float]).status, 0, source)
            let q = try runTool(["quantize", "--int8", e.path(source), int8, "--calibration", calibration])
            XCTAssertEqual(q.status, 0, "\(source): \(q.stderr)")
            let f = try Model(path: float, threads: 2), m = try Model(path: int8, threads: 2)
            XCTAssertTrue(m.graph.nodes.allSatisfy(\.op.isFused), "\(source): \(m.graph.opHistogram)")
            XCTAssertGreaterThanOrEqual(m.graph.initializers.values.filter { $0.dtype == .int8 }.count, 7, source)
            let a = try f.predictAll([f.inputName: test]), b = try m.predictAll([m.inputName: test])
            for name in e.outputs {
                let ref = try XCTUnwrap(a[name]), y = try XCTUnwrap(b[name])
                var signal = 0.0, noise = 0.0
                for (p, r) in zip(y.floats, ref.floats) { signal += Double(r) * Double(r); noise += Double(p - r) * Double(p - r) }
                let sqnr = 10 * log10(signal / max(noise, 1e-30))
                print(String(format: "hf backbone int8 %@ %@: SQNR %.1f dB", source, name, sqnr))
                XCTAssertGreaterThanOrEqual(sqnr, 30, "\(source) \(name)")
            }
        }
    }

    /// Approximately standard normal values (the sum of twelve uniforms, less six) from a
    /// fixed-seed SplitMix64 stream.
    func normalSamples(_ shape: [Int], seed: UInt64) -> Tensor {
        var z = seed
        func next() -> Double {
            z &+= 0x9E37_79B9_7F4A_7C15
            var v = z
            v = (v ^ (v >> 30)) &* 0xBF58_476D_1CE4_E5B9
            v = (v ^ (v >> 27)) &* 0x94D0_49BB_1331_11EB
            return Double((v ^ (v >> 31)) >> 11) / Double(1 << 53)
        }
        return Tensor(floats: (0..<shape.reduce(1, *)).map { _ in Float((0..<12).reduce(0.0) { s, _ in s + next() } - 6) }, shape: shape)
    }
}
