import CNXConvert
import CNXFormat
import CNXGraph
import CNXIO
@testable import CNXImport
import CNXRuntime
import CNXTestSupport
import XCTest

/// A timm-named ConvNeXt state dict with random values, written as safetensors: for the cases
/// no fixture has (registered sizes that are too large to commit, near-misses of the table).
struct SyntheticTimm {
    var depths: [Int]
    var dims: [Int]
    var kernels: [Int]
    var classes = 10
    var seed: UInt64 = 1

    var tensors: [(String, [Int])] {
        var out: [(String, [Int])] = [
            ("stem.0.weight", [dims[0], 3, 4, 4]), ("stem.0.bias", [dims[0]]),
            ("stem.1.weight", [dims[0]]), ("stem.1.bias", [dims[0]]),
        ]
        for (i, c) in dims.enumerated() {
            if i > 0 {
                out += [
                    ("stages.\(i).downsample.0.weight", [dims[i - 1]]), ("stages.\(i).downsample.0.bias", [dims[i - 1]]),
                    ("stages.\(i).downsample.1.weight", [c, dims[i - 1], 2, 2]), ("stages.\(i).downsample.1.bias", [c]),
                ]
            }
            for j in 0..<depths[i] {
                let p = "stages.\(i).blocks.\(j)."
                out += [
                    (p + "gamma", [c]), (p + "conv_dw.weight", [c, 1, kernels[i], kernels[i]]), (p + "conv_dw.bias", [c]),
                    (p + "norm.weight", [c]), (p + "norm.bias", [c]), (p + "mlp.fc1.weight", [4 * c, c]), (p + "mlp.fc1.bias", [4 * c]),
                    (p + "mlp.fc2.weight", [c, 4 * c]), (p + "mlp.fc2.bias", [c]),
                ]
            }
        }
        let last = dims[dims.count - 1]
        out += [
            ("head.norm.weight", [last]), ("head.norm.bias", [last]), ("head.fc.weight", [classes, last]), ("head.fc.bias", [classes]),
        ]
        return out
    }

    /// The safetensors bytes: values uniform in [-0.5, 0.5) (norm weights near 1).
    func bytes() -> [UInt8] {
        var state = seed
        var header: [String] = []
        var data: [UInt8] = []
        for (name, shape) in tensors {
            let n = shape.reduce(1, *)
            let begin = data.count
            for _ in 0..<n {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                var v = Float(state >> 40) / Float(1 << 24) - 0.5
                if name.hasSuffix("norm.weight") || name.hasSuffix("downsample.0.weight") || name == "stem.1.weight" { v += 1 }
                withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 }
            }
            header.append("\"\(name)\": {\"dtype\": \"F32\", \"shape\": \(shape), \"data_offsets\": [\(begin), \(data.count)]}")
        }
        var json = Array(("{" + header.joined(separator: ", ") + "}").utf8)
        while (json.count + 8) % 8 != 0 { json.append(0x20) }
        return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data
    }

    func write(to dir: URL, _ name: String = "model.safetensors") throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes()).write(to: url)
        return url.path
    }
}

/// Converts `path` to `cnx` with the tool, which must refuse: exit status 1, one line on stderr
/// holding each of `parts`, no output file. `label` names the case in failures.
func assertConversionRefused(
    _ path: String, to cnx: String, mentioning parts: [String], label: String,
    file: StaticString = #filePath, line: UInt = #line
) throws {
    let r = try runTool([path, cnx])
    XCTAssertEqual(r.status, 1, label, file: file, line: line)
    let message = r.stderr.trimmingCharacters(in: .newlines)
    for part in parts {
        XCTAssertTrue(message.contains(part), "\(label): \(part) not in \(message)", file: file, line: line)
    }
    XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
    XCTAssertFalse(FileManager.default.fileExists(atPath: cnx), "\(label): \(cnx) was written", file: file, line: line)
}

/// What the weights do not carry: resolved from flags, config.json, timm's table or the
/// scheme's default, printed by `convert`, recorded in the `.cnx`, refused when ambiguous.
final class AssumptionTests: XCTestCase {
    func message(_ body: () throws -> Any) -> String { thrownMessage(body) }

    func facts(_ v: TimmVariant) -> WeightFacts {
        var sites: Set<NormSite> = [.stem, .downsample, .block, .head]
        if case .features = v.head { sites.remove(.head) }
        return WeightFacts(
            scheme: .timm, depths: v.depths, dims: v.dims, kernels: v.kernels, convMLP: v.convMLP, grn: v.grn,
            layerScale: v.layerScale, stem: v.stem, head: v.head, normHasBias: v.norm.hasBias, sites: sites)
    }

    func resolve(_ f: WeightFacts, _ options: CheckpointOptions = CheckpointOptions()) throws -> Hyperparameters {
        let layers = try StateDictGraph.hyperparameterLayers(
            f, options: options, config: nil, configPath: "config.json",
            tensors: [:], layout: StateDictGraph.Layout(scheme: f.scheme))
        return try HyperparameterResolver.resolve(f, layers)
    }

    /// Every variant timm registers resolves, from its weights alone, to its own values: no two
    /// collide, and ConvNeXt-XXL gets LayerNorm eps 1e-5 (the 1.6e-4 error of issue #11).
    func testEveryRegisteredVariantResolvesToItsOwnValues() throws {
        XCTAssertEqual(TimmVariant.all.count, 31)
        for v in TimmVariant.all {
            let hp = try resolve(facts(v))
            XCTAssertEqual(hp.norm, v.norm, v.name)
            XCTAssertEqual(hp.activation, v.activation, v.name)
            XCTAssertEqual(hp.eps(.block), v.eps, v.name)
            XCTAssertEqual(hp.eps(.head), v.eps, v.name)
            let eps = try XCTUnwrap(hp.assumptions.first { $0.name == "eps" }, v.name)
            XCTAssertEqual(eps.source, "timm \(v.name), matched by depths and widths", v.name)
        }
        let xxl = try XCTUnwrap(TimmVariant.named("convnext_xxlarge"))
        let hp = try resolve(facts(xxl))
        XCTAssertEqual(
            hp.assumptions.first { $0.name == "eps" }?.description, "eps 1e-5 (timm convnext_xxlarge, matched by depths and widths)")
        XCTAssertEqual(hp.assumptions.first { $0.name == "eps" }?.metadataKey, "source.assumed.eps")
        // The same widths with other depths are no registered variant: timm's default, said so.
        var other = facts(xxl)
        other.depths = [3, 3, 27, 3]
        XCTAssertEqual(
            try resolve(other).assumptions.first { $0.name == "eps" }?.description,
            "eps 1e-6 (timm's default; no registered timm variant has these depths and widths)")
        // A flag wins over the table.
        let flagged = try resolve(facts(xxl), CheckpointOptions(layerNormEps: try CheckpointOptions.parseEps("1e-6")))
        XCTAssertEqual(flagged.assumptions.first { $0.name == "eps" }?.description, "eps 1e-6 (--layer-norm-eps)")
    }

    /// The smallest registered timm ConvNeXt, from a bare file: eps 1e-5 and tanh GELU come from
    /// the table, `convert` prints them with their source, the `.cnx` records them, and the
    /// converted model matches PyTorch.
    func testRegisteredVariantIsMatchedPrintedAndRecorded() throws {
        let e = try Families.entry("timm_registered")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cnx = dir.appendingPathComponent("t.cnx").path
        let r = try runTool([e.path("model.safetensors"), cnx])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("assumed:   eps 1e-5 (timm test_convnext, matched by depths and widths)\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("assumed:   activation gelu_tanh (timm test_convnext, matched by depths and widths)\n"), r.stdout)
        let metadata = try CNXReader.load(path: cnx).metadata
        XCTAssertEqual(metadata["source.assumed.eps"], .string("1e-5 (timm test_convnext, matched by depths and widths)"))
        XCTAssertEqual(metadata["source.assumed.activation"], .string("gelu_tanh (timm test_convnext, matched by depths and widths)"))
        XCTAssertEqual(metadata["source.assumed.norm"], .string("layernorm (the norms have a weight and a bias)"))
        let out = dir.appendingPathComponent("y.npy").path
        let run = try runTool(["run", cnx, "--input", e.path("input.npy"), "--output", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertLessThanOrEqual(Families.error(try NPY.read(path: out), try e.expected("logits")), 1e-5)
    }

    /// Weights that fit two registered variants differing in a value, with nothing to say which:
    /// refused with one line naming both and the flag; the flag then decides.
    func testAmbiguousWeightsAreRefusedNamingTheCandidatesAndTheFlag() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // test_convnext2 and test_convnext3's depths and widths, kernels of neither.
        let path = try SyntheticTimm(depths: [1, 1, 1, 1], dims: [32, 64, 96, 128], kernels: [3, 3, 3, 3]).write(to: dir)
        let cnx = dir.appendingPathComponent("a.cnx").path
        try assertConversionRefused(
            path, to: cnx,
            mentioning: [
                "test_convnext2 (activation gelu_tanh)", "test_convnext3 (activation silu)", "choose with --activation gelu_tanh|silu",
            ],
            label: "ambiguous")
        let chosen = try runTool([path, cnx, "--activation", "silu"])
        XCTAssertEqual(chosen.status, 0, chosen.stderr)
        XCTAssertTrue(chosen.stdout.contains("assumed:   activation silu (--activation)\n"), chosen.stdout)
        // Both candidates agree on eps: that comes from them.
        XCTAssertTrue(
            chosen.stdout.contains(
                "assumed:   eps 1e-5 (timm test_convnext2, test_convnext3, matched by depths and widths; its kernels, stem or head differ)"),
            chosen.stdout)
        // Exactly test_convnext3's kernels: no ambiguity.
        let exact = try SyntheticTimm(depths: [1, 1, 1, 1], dims: [32, 64, 96, 128], kernels: [7, 5, 5, 3]).write(
            to: dir, "exact.safetensors")
        let hp = try CheckpointReader.load(path: exact, kind: .safetensors).hyperparameters
        XCTAssertEqual(hp.activation, .silu)
        XCTAssertEqual(hp.assumptions.first { $0.name == "activation" }?.source, "timm test_convnext3, matched by depths and widths")
    }

    /// A bare file of a custom size says that it fell back to the defaults (and those give other
    /// answers than PyTorch's: what the flags are for); norms without a bias are refused.
    func testBareFilesOfCustomSizesNameTheirFallbacks() throws {
        for e in try Families.all() where !e.bare_flags.isEmpty {
            let path = e.path("model.safetensors")
            if e.bare_flags["norm"] != nil {
                let m = message { try ModelLoader.load(path) }
                XCTAssertTrue(
                    m.contains("the norms have no bias") && m.contains("choose with --norm rmsnorm|simplenorm"), "\(e.name): \(m)")
                continue
            }
            let loaded = try ModelLoader.load(path)
            let fallback =
                e.source == "timm" ? "timm's default; no registered timm variant has these depths and widths" : "transformers' default"
            XCTAssertTrue(
                loaded.assumptions.contains { $0.source.hasPrefix(fallback) }, "\(e.name): \(loaded.assumptions.map(\.description))")
            let y = try XCTUnwrap(try Families.run(loaded.graph, try NPY.read(path: e.path("input.npy")))[e.outputs[0]])
            XCTAssertGreaterThan(Families.error(y, try e.expected(e.outputs[0])), 1e-5, "\(e.name): the defaults should not fit")
        }
    }

    /// `--reference-onnx`: the checkpoint's graph against the ONNX export of the same model.
    func testReferenceONNXRefusesAWrongAssumption() throws {
        let e = try Families.entry("timm_tanh")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cnx = dir.appendingPathComponent("t.cnx").path
        let wrong = try runTool([e.path("model.safetensors"), cnx, "--reference-onnx", e.path("model.onnx")])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("differs from the ONNX export") && wrong.stderr.contains("--activation"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cnx))
        let right = try runTool([
            e.path("model.safetensors"), cnx, "--reference-onnx", e.path("model.onnx"),
            "--activation", "gelu_tanh", "--layer-norm-eps", "1e-5",
        ])
        XCTAssertEqual(right.status, 0, right.stderr)
        XCTAssertTrue(right.stdout.contains("reference: relative error"), right.stdout)
        XCTAssertTrue(right.stdout.contains("assumed:   eps 1e-5 (--layer-norm-eps)"), right.stdout)
        let hub = try runTool([e.path("hub"), cnx, "--reference-onnx", e.path("model.onnx")])
        XCTAssertEqual(hub.status, 0, hub.stderr)
        XCTAssertTrue(hub.stdout.contains("assumed:   activation gelu_tanh (config.json: architecture test_convnext)"), hub.stdout)
    }

    /// transformers: the pooled norm's epsilon is config.json's, the others transformers' own.
    func testTransformersEpsilonsAreRecordedPerNorm() throws {
        let e = try Families.entry("hf_convnextv2")
        let m = try ModelLoader.load(e.path("hf")).metadata
        XCTAssertEqual(m["source.assumed.eps"], .string("1e-6 (transformers' ConvNeXt, fixed in its code)"))
        XCTAssertEqual(m["source.assumed.eps.head"], .string("0.01 (config.json: layer_norm_eps)"))
        XCTAssertEqual(m["source.assumed.activation"], .string("gelu_tanh (config.json: hidden_act gelu_new)"))
        XCTAssertEqual(m["source.naming_scheme"], .string("transformers"))
        let v1 = try ModelLoader.load(try Families.entry("hf_convnext").path("hf")).metadata
        XCTAssertEqual(v1[MetadataKey.classNames], .strings(["cat", "dog", "fox", "owl", "yak"]))
    }

    func testFlagsAreCheckedAgainstTheWeights() throws {
        let rms = try Families.entry("timm_rms").path("model.safetensors")
        XCTAssertTrue(
            message { try ModelLoader.load(rms, options: CheckpointOptions(norm: .layerNorm)) }.contains(
                "a LayerNorm has a bias, but the checkpoint's norms have none"))
        let hp = try CheckpointReader.load(path: rms, kind: .safetensors, options: CheckpointOptions(norm: .rmsNorm)).hyperparameters
        XCTAssertEqual(hp.assumptions.first { $0.name == "norm" }?.description, "norm rmsnorm (--norm)")
        let ln = try Families.entry("timm_hnf").path("model.safetensors")
        XCTAssertTrue(
            message { try ModelLoader.load(ln, options: CheckpointOptions(norm: .simpleNorm)) }.contains(
                "--norm simplenorm: the checkpoint's norms have a bias"))

        XCTAssertEqual(try CheckpointOptions.parseEps("1e-5").count, NormSite.allCases.count)
        XCTAssertEqual(try CheckpointOptions.parseEps("head=1e-12, block=1e-6"), [.head: 1e-12, .block: 1e-6])
        XCTAssertTrue(message { try CheckpointOptions.parseEps("head=x") }.contains("'x' is not a positive number"))
        XCTAssertTrue(message { try CheckpointOptions.parseEps("neck=1e-5") }.contains("is not site=number"))
        XCTAssertTrue(message { try CheckpointOptions.parseEps("-1") }.contains("not a positive number"))
    }

    /// A config.json that disagrees with the weights: one line naming it and the key, exit 1.
    func testConfigThatDisagreesWithTheWeightsIsRefused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func edited(_ family: String, _ folder: String, _ change: (inout [String: Any]) -> Void) throws -> String {
            let copy = dir.appendingPathComponent(UUID().uuidString)
            try FileManager.default.copyItem(atPath: try Families.entry(family).path(folder), toPath: copy.path)
            let configURL = copy.appendingPathComponent("config.json")
            var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
            change(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: configURL)
            return copy.path
        }
        let cases: [(String, String, (inout [String: Any]) -> Void, String)] = [
            (
                "hf_convnext", "hf", { $0["hidden_sizes"] = [4, 8, 12, 20] },
                "hidden_sizes [4, 8, 12, 20], but the weights have widths [4, 8, 12, 16]"
            ),
            ("hf_convnext", "hf", { $0["depths"] = [1, 1, 1, 1] }, "depths [1, 1, 1, 1], but the weights have depths [1, 1, 2, 1]"),
            (
                "hf_convnext", "hf", { $0["id2label"] = ["0": "a", "1": "b", "2": "c"] },
                "id2label has 3 labels, but the weights have 5 classes"
            ),
            ("hf_convnext", "hf", { $0["model_type"] = "convnextv2" }, "model_type convnextv2, but the weights have no GRN"),
            ("hf_convnext", "hf", { $0["num_channels"] = 1 }, "num_channels 1, but the weights have 3 input channels"),
            ("hf_convnext", "hf", { $0["patch_size"] = 2 }, "patch_size 2, but the weights have a 4x4 stem"),
            ("hf_convnext", "hf", { $0["hidden_act"] = "relu" }, "hidden_act 'relu' is not an activation this reader knows"),
            ("hf_convnext", "hf", { $0["model_type"] = "vit" }, "a transformers config for model_type 'vit', not a ConvNeXt"),
            (
                "timm_tanh", "hub",
                {
                    $0["architecture"] = "convnext_tiny"; $0["model_args"] = [:] as [String: Any]
                },
                "architecture convnext_tiny has depths [3, 3, 9, 3] and widths [96, 192, 384, 768], but the weights have [1, 1, 2, 1] and [4, 8, 12, 16]"
            ),
            (
                "timm_tanh", "hub", { $0["model_args"] = ["depths": [1, 1, 2, 1], "dims": [4, 8, 12, 16], "act_layer": "relu"] },
                "model_args.act_layer 'relu' is not an activation this reader knows"
            ),
            ("timm_tanh", "hub", { $0["num_classes"] = 7 }, "num_classes is 7 but the weights in model.safetensors have 10 classes"),
        ]
        for (family, folder, change, expected) in cases {
            let path = try edited(family, folder, change)
            try assertConversionRefused(
                path, to: dir.appendingPathComponent("x.cnx").path, mentioning: [expected, "config.json"], label: expected)
        }
        // model_args.norm_eps and act_layer override the architecture's values.
        let custom = try edited("timm_tanh", "hub") {
            $0["model_args"] = ["depths": [1, 1, 2, 1], "dims": [4, 8, 12, 16], "norm_eps": 1e-3, "act_layer": "silu"]
        }
        let hp = try CheckpointReader.load(path: custom, kind: .safetensors).hyperparameters
        XCTAssertEqual(hp.eps(.block), 1e-3)
        XCTAssertEqual(hp.activation, .silu)
        XCTAssertEqual(hp.assumptions.first { $0.name == "eps" }?.source, "config.json: model_args.norm_eps")
    }
}

/// Sharded checkpoints: read shard by shard, and every way an index can lie is one clear line.
final class ShardedCheckpointTests: XCTestCase {
    func testShardsAreReadAsViewsOfEachShard() throws {
        let e = try Families.entry("hf_convnext")
        let checkpoint = try CheckpointReader.load(path: e.path("hf_sharded"), kind: .safetensors)
        XCTAssertEqual(
            checkpoint.shards, ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"])
        XCTAssertEqual(checkpoint.format, "safetensors")
        for (name, t) in checkpoint.graph.initializers where name.hasSuffix("dwconv.weight") || name == "classifier.weight" {
            XCTAssertTrue(t.storage.isBorrowed, name)
        }
        let bin = try CheckpointReader.load(path: e.path("hf_sharded_bin/pytorch_model.bin.index.json"), kind: .pth)
        XCTAssertEqual(bin.format, "pth")
        XCTAssertEqual(bin.shards.count, 3)
    }

    func testEveryLyingIndexIsRefusedInOneLine() throws {
        let root = CheckpointFixtures.root.appendingPathComponent("misc/shards")
        let cases = [
            ("missing_shard", "the index names shard 'model-00002-of-00002.safetensors', which does not exist"),
            ("overlap", "tensor 'b' is in shard 'model-00001-of-00002.safetensors' and again in shard 'model-00002-of-00002.safetensors'"),
            (
                "wrong_map",
                "the weight_map puts tensor 'b' in shard 'model-00001-of-00002.safetensors', but shard 'model-00002-of-00002.safetensors' holds it"
            ),
            ("unlisted", "shard 'model-00001-of-00002.safetensors' holds tensor 'c', which the weight_map does not list"),
            ("not_listed_in_shard", "the weight_map puts tensor 'c' in shard 'model-00002-of-00002.safetensors', which does not hold it"),
            ("outside", "weight_map entry 'a' names '../model-00001-of-00002.safetensors', which is not a file in the index's folder"),
        ]
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (folder, expected) in cases {
            let path = root.appendingPathComponent(folder).path
            try assertConversionRefused(
                path, to: dir.appendingPathComponent("\(folder).cnx").path,
                mentioning: [expected, "model.safetensors.index.json"], label: folder)
        }
    }
}
