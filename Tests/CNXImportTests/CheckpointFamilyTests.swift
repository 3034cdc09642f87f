import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
import CNXImport
import CNXPasses
import CNXReference
import CNXRuntime
import CNXTestSupport
import XCTest

/// The checkpoint fixtures of Fixtures/make_checkpoints.py.
enum CheckpointFixtures: FixtureManifest {
    static var root: URL { Fixtures.root.appendingPathComponent("Fixtures/checkpoints") }

    struct Entry: FixtureEntry {
        static var folder: URL { CheckpointFixtures.root }

        let name: String
        let source: String
        let family: String
        let depths: [Int]
        let dims: [Int]
        let num_classes: Int
        let stem: String
        let extras: [String]
        let grn: Bool
        let layer_scale: Bool
    }

    static func misc(_ file: String) -> String { root.appendingPathComponent("misc").appendingPathComponent(file).path }

    static func run(_ graph: Graph, _ x: Tensor) throws -> Tensor {
        let out = try ReferenceExecutor(graph: graph).run([graph.inputs[0].name: x])
        return try XCTUnwrap(out[graph.outputs[0].name])
    }
}

/// For every model family: the graph read from the checkpoint (safetensors and .pth, and the
/// wrapped and hub forms where the fixtures have them) computes what the ONNX export of the
/// same weights computes, and what ONNX Runtime computed; the optimiser fuses it.
final class CheckpointFamilyTests: XCTestCase {
    func testEveryFamilyMatchesItsONNXExportAndONNXRuntime() throws {
        let entries = try CheckpointFixtures.manifest()
        XCTAssertEqual(
            Set(entries.map(\.name)),
            ["timm_linear", "timm_convmlp", "timm_ols", "torchvision", "v2", "reference", "reference_v2", "isotropic"])
        for e in entries {
            let x = try NPY.read(path: e.path("input.npy"))
            let expected = try NPY.read(path: e.path("expected.npy"))
            let onnx = try CheckpointFixtures.run(try ONNXReader.load(path: e.path("model.onnx")), x)
            var files: [(String, CheckpointReader.Kind)] = [("model.safetensors", .safetensors), ("model.pth", .pth)]
            if e.extras.contains("model_wrapped.pth") { files.append(("model_wrapped.pth", .pth)) }
            if e.extras.contains("hub/") { files.append(("hub", .safetensors)) }
            for (file, kind) in files {
                let label = "\(e.name)/\(file)"
                let checkpoint = try CheckpointReader.load(path: e.path(file), kind: kind)
                let graph = checkpoint.graph
                XCTAssertEqual(graph.inputs[0].name, "input", label)
                XCTAssertEqual(graph.outputs[0].name, "logits", label)
                XCTAssertEqual(graph.outputs[0].shape, [.symbol("batch"), .fixed(e.num_classes)], label)
                let y = try CheckpointFixtures.run(graph, x)
                XCTAssertEqual(y.shape, expected.shape, label)
                XCTAssertLessThanOrEqual(relativeError(y.floats, onnx.floats), 1e-5, "\(label) against the ONNX export")
                XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, "\(label) against ONNX Runtime")
                let a = try XCTUnwrap(Architecture.recognise(graph), label)
                XCTAssertEqual(a.depths, e.depths, label)
                XCTAssertEqual(a.dims, e.dims, label)
                XCTAssertEqual(a.classes, e.num_classes, label)
                XCTAssertEqual(a.stem, e.stem, label)
                XCTAssertEqual(a.grn, e.grn, label)
                let expectedScheme = e.source == "isotropic" ? "reference (isotropic)" : e.source
                XCTAssertEqual(checkpoint.scheme.name, expectedScheme, label)
            }
        }
    }

    /// The checkpoint graph is the canonical form the passes expect: the standard pipeline
    /// leaves only fused operations (the overlapping and isotropic stems included), one
    /// cnx.Block per block, and the same answer.
    func testPipelineFusesEveryCheckpointGraph() throws {
        for e in try CheckpointFixtures.manifest() {
            let original = try CheckpointReader.load(path: e.path("model.pth"), kind: .pth).graph
            var graph = original
            _ = try Pipeline.standard.run(&graph)
            XCTAssertEqual(graph.nodes.filter { $0.op == .block }.count, e.depths.reduce(0, +), e.name)
            XCTAssertEqual(graph.nodes.filter { $0.op == .head }.count, 1, e.name)
            XCTAssertTrue(graph.nodes.allSatisfy { $0.op.isFused }, "\(e.name): \(graph.opHistogram)")
            let x = try NPY.read(path: e.path("input.npy"))
            let before = try CheckpointFixtures.run(original, x), after = try CheckpointFixtures.run(graph, x)
            XCTAssertLessThanOrEqual(relativeError(after.floats, before.floats), 1e-5, e.name)
        }
    }

    /// The graph from a checkpoint and from the ONNX export of the same weights optimise to the
    /// same fused operations.
    func testCheckpointAndONNXOptimiseToTheSameOperations() throws {
        for e in try CheckpointFixtures.manifest() {
            var a = try CheckpointReader.load(path: e.path("model.safetensors"), kind: .safetensors).graph
            var b = try ONNXReader.load(path: e.path("model.onnx"))
            _ = try Pipeline.standard.run(&a)
            _ = try Pipeline.standard.run(&b)
            XCTAssertEqual(a.nodes.map(\.op), b.nodes.map(\.op), e.name)
        }
    }

    /// float16 and bfloat16 checkpoints are widened: every weight equals the float32 one to the
    /// precision of the stored type, and the logits stay close.
    func testHalfPrecisionCheckpointsAreWidenedToFloat32() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_linear" })
        let full = try SafetensorsReader.load(path: e.path("model.safetensors"))
        let x = try NPY.read(path: e.path("input.npy"))
        let expected = try NPY.read(path: e.path("expected.npy"))
        for (file, tolerance) in [
            ("model_f16.safetensors", Float(1) / 1024), ("model_f16.pth", 1 / 1024), ("model_bf16.safetensors", 1 / 128),
        ] {
            let half =
                file.hasSuffix(".pth") ? try TorchCheckpoint.load(path: e.path(file)) : try SafetensorsReader.load(path: e.path(file))
            XCTAssertEqual(half.names.sorted(), full.names.sorted(), file)
            for name in full.names {
                let a = try XCTUnwrap(half.tensors[name]), b = try XCTUnwrap(full.tensors[name])
                XCTAssertEqual(a.dtype, .float32, "\(file) \(name)")
                XCTAssertFalse(a.storage.isBorrowed, "\(file) \(name): widened values are a copy")
                XCTAssertEqual(a.shape, b.shape)
                for (u, v) in zip(a.floats, b.floats) where abs(u - v) > tolerance * abs(v) + 1e-7 {
                    XCTFail("\(file) \(name): \(u) is not \(v) to \(tolerance)")
                    break
                }
            }
            let graph = try CheckpointReader.load(path: e.path(file), kind: file.hasSuffix(".pth") ? .pth : .safetensors).graph
            let y = try CheckpointFixtures.run(graph, x)
            XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 0.05, file)
        }
    }

    /// Float32 weights are views of the mapped file (nothing copied), in both formats; only the
    /// pointwise layers' weights, which MatMul needs transposed, are new memory.
    func testWeightsAreBorrowedFromTheMappedFile() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_linear" })
        for (file, kind) in [("model.safetensors", CheckpointReader.Kind.safetensors), ("model.pth", .pth)] {
            let graph = try CheckpointReader.load(path: e.path(file), kind: kind).graph
            for (name, t) in graph.initializers
            where name.hasSuffix("conv_dw.weight") || name.hasSuffix("head.fc.weight") || name.hasSuffix("norm.weight") {
                XCTAssertTrue(t.storage.isBorrowed, "\(file): \(name)")
            }
            let transposed = graph.initializers.filter { $0.key.hasSuffix("_transposed") }
            XCTAssertEqual(transposed.count, 2 * e.depths.reduce(0, +), file)
            XCTAssertTrue(transposed.values.allSatisfy { !$0.storage.isBorrowed }, file)
        }
    }

    /// A timm hub folder (config.json + model.safetensors) gives the model name, the class names
    /// and the preprocessing as .cnx metadata; a config.json beside a weights file does too.
    func testHubFolderGivesNameLabelsAndPreprocessing() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_linear" })
        let config = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: e.path("hub/config.json")))) as? [String: Any])
        let cfg = try XCTUnwrap(config["pretrained_cfg"] as? [String: Any])
        for path in [e.path("hub"), e.path("hub/model.safetensors")] {
            let loaded = try ModelLoader.load(path)
            XCTAssertEqual(loaded.format, "safetensors")
            let m = loaded.metadata
            XCTAssertEqual(m[MetadataKey.variant], .string(try XCTUnwrap(config["architecture"] as? String)), path)
            XCTAssertEqual(m[MetadataKey.classNames], .strings((0..<10).map { "class_\($0)" }), path)
            XCTAssertEqual(m[MetadataKey.inputSize], .ints([256, 256]), path)
            XCTAssertEqual(m[MetadataKey.cropPct], .float(0.9), path)
            XCTAssertEqual(m[MetadataKey.interpolation], .string(try XCTUnwrap(cfg["interpolation"] as? String)), path)
            XCTAssertEqual(m[MetadataKey.mean], .floats([0.485, 0.456, 0.406]), path)
            XCTAssertEqual(m[MetadataKey.std], .floats([0.229, 0.224, 0.225]), path)
            XCTAssertEqual(m["source.naming_scheme"], .string("timm"), path)
        }
        // Without a config, no preprocessing is claimed.
        let bare = try ModelLoader.load(e.path("model.safetensors"))
        XCTAssertNil(bare.metadata[MetadataKey.classNames])
        XCTAssertNil(bare.metadata[MetadataKey.inputSize])
    }

    /// ModelLoader tells the formats apart by content, whatever the extension says.
    func testModelLoaderDispatchesOnContent() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "torchvision" })
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, String, String)] = [
            ("model.safetensors", "weights.bin", "safetensors"),
            ("model.pth", "weights.dat", "pth"),
            ("model.pth", "weights.pt", "pth"),
            ("model.onnx", "model.onnx", "onnx"),
        ]
        for (source, name, format) in cases {
            let copy = dir.appendingPathComponent(name)
            try? FileManager.default.removeItem(at: copy)
            try FileManager.default.copyItem(atPath: e.path(source), toPath: copy.path)
            XCTAssertEqual(try ModelLoader.load(copy.path).format, format, name)
        }
        XCTAssertEqual(ModelLoader.sourceFile(e.path("model.pth")), e.path("model.pth"))
        let hub = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_linear" }).path("hub")
        XCTAssertEqual(ModelLoader.sourceFile(hub), hub + "/model.safetensors")
    }
}

/// Stems that no fixture has: timm's `overlap_act` (a GELU between the two convolutions, so the
/// modules are stem.0, stem.2 and stem.3) and a 2x2 patchify stem.
final class CheckpointStemTests: XCTestCase {
    func renamed(_ sd: StateDict, _ map: [String: String]) -> StateDict {
        var tensors: [String: Tensor] = [:]
        for (k, v) in sd.tensors { tensors[map.first { k.hasPrefix($0.key) }.map { $0.value + k.dropFirst($0.key.count) } ?? k] = v }
        let names = sd.names.map { k in map.first { k.hasPrefix($0.key) }.map { $0.value + k.dropFirst($0.key.count) } ?? k }
        return StateDict(names: names, tensors: tensors)
    }

    func testOverlapActStemPutsAGeluBetweenItsConvolutions() throws {
        let e = try XCTUnwrap(try CheckpointFixtures.manifest().first { $0.name == "timm_ols" })
        let sd = renamed(try SafetensorsReader.load(path: e.path("model.safetensors")), ["stem.2.": "stem.3.", "stem.1.": "stem.2."])
        let graph = try StateDictGraph.build(sd, format: "safetensors", source: "x").graph
        let ops = graph.nodes.prefix(3).map(\.op)
        XCTAssertEqual(ops, [.conv, .gelu, .conv])
        XCTAssertEqual(Architecture.recognise(graph)?.stem, "overlapping: two 3x3 stride 2")
        let y = try CheckpointFixtures.run(graph, try NPY.read(path: e.path("input.npy")))
        XCTAssertEqual(y.shape, [1, 10])
        XCTAssertTrue(y.floats.allSatisfy(\.isFinite))
    }
}
