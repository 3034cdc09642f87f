import CNXFormat
import CNXGraph
import CNXIO
import CNXTestSupport
import XCTest

/// `convnext-convert` on checkpoints: convert a `.safetensors` / `.pth` to `.cnx` and run it,
/// run and inspect the checkpoint directly, and refuse a malicious pickle.
final class CLICheckpointTests: XCTestCase {
    static var checkpoints: URL { Fixtures.root.appendingPathComponent("Fixtures/checkpoints") }

    func fixture(_ family: String, _ file: String) -> String {
        Self.checkpoints.appendingPathComponent(family).appendingPathComponent(file).path
    }

    func testConvertCheckpointThenRunMatchesONNXRuntime() throws {
        let dir = try scratchDirectory()
        let families = ["timm_linear", "timm_convmlp", "timm_ols", "torchvision", "v2", "reference", "reference_v2", "isotropic"]
        for family in families {
            let expected = try NPY.read(path: fixture(family, "expected.npy"))
            for file in ["model.safetensors", "model.pth"] {
                let label = "\(family)/\(file)"
                let cnx = dir.appendingPathComponent("\(family)-\(file).cnx").path
                let convert = try runTool([fixture(family, file), cnx])
                XCTAssertEqual(convert.status, 0, "\(label): \(convert.stderr)")
                XCTAssertTrue(convert.stdout.contains("verified:"), label)
                let out = dir.appendingPathComponent("\(family)-\(file).npy").path
                let run = try runTool(["run", cnx, "--input", fixture(family, "input.npy"), "--output", out])
                XCTAssertEqual(run.status, 0, "\(label): \(run.stderr)")
                let y = try NPY.read(path: out)
                XCTAssertEqual(y.shape, expected.shape, label)
                XCTAssertLessThanOrEqual(relativeError(y.floats, expected.floats), 1e-4, label)
                let metadata = try CNXReader.load(path: cnx).metadata
                XCTAssertEqual(metadata[MetadataKey.sourceFileName], .string(file), label)
            }
        }
    }

    func testRunAndInspectReadCheckpointsDirectly() throws {
        let dir = try scratchDirectory()
        let expected = try NPY.read(path: fixture("torchvision", "expected.npy"))
        for (file, format) in [("model.pth", "pth"), ("model_wrapped.pth", "pth"), ("model.safetensors", "safetensors")] {
            let out = dir.appendingPathComponent("\(file).npy").path
            let run = try runTool(["run", fixture("torchvision", file), "--input", fixture("torchvision", "input.npy"), "--output", out])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertLessThanOrEqual(relativeError(try NPY.read(path: out).floats, expected.floats), 1e-4, file)
            let inspect = try runTool(["inspect", fixture("torchvision", file)])
            XCTAssertEqual(inspect.status, 0, inspect.stderr)
            for s in ["format:     \(format)", "torchvision naming", "depths:   1, 2, 1, 1", "classes:  10"] {
                XCTAssertTrue(inspect.stdout.contains(s), "\(file): \(s) not in\n\(inspect.stdout)")
            }
        }
    }

    func testHubMetadataGoesIntoTheCNXFile() throws {
        let dir = try scratchDirectory()
        let cnx = dir.appendingPathComponent("hub.cnx").path
        let r = try runTool([fixture("timm_linear", "hub/model.safetensors"), cnx])
        XCTAssertEqual(r.status, 0, r.stderr)
        let m = try CNXReader.load(path: cnx).metadata
        XCTAssertEqual(m[MetadataKey.variant], .string("convnext_atto"))
        XCTAssertEqual(m[MetadataKey.inputSize], .ints([256, 256]))
        XCTAssertEqual(m[MetadataKey.cropPct], .float(0.9))
        XCTAssertEqual(m[MetadataKey.interpolation], .string("bilinear"))
        XCTAssertEqual(m[MetadataKey.classNames]?.stringsValue?.count, 10)
    }

    func testMaliciousCheckpointIsRefused() throws {
        let marker = "/tmp/cnx_pwned_marker"
        try? FileManager.default.removeItem(atPath: marker)
        let dir = try scratchDirectory()
        let path = Self.checkpoints.appendingPathComponent("misc/malicious.pth").path
        let out = dir.appendingPathComponent("m.cnx").path
        for args in [[path, out], ["inspect", path]] {
            let r = try runTool(args)
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.stderr.contains("'posix.system'") && r.stderr.contains("refused"), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }
}
