import CNXGraph
import CNXIO
import CNXTestSupport
import Foundation
import XCTest

/// The C API as a C program uses it: examples/c/classify.c and Tests/capi/capi_test.c compiled
/// with cc against the built libcnxruntime, run on models converted by the built tool; and the
/// Python package (scripts/python-test.sh).
final class CAPITests: XCTestCase {
    static let buildDirectory = Fixtures.tool.deletingLastPathComponent()
    static var library: URL {
        #if os(macOS)
            buildDirectory.appendingPathComponent("libcnxruntime.dylib")
        #else
            buildDirectory.appendingPathComponent("libcnxruntime.so")
        #endif
    }

    /// The sanitizer the build was made with (scripts/sanitizers.sh builds into .build-asan and
    /// .build-tsan): a program that loads the instrumented library must be built with it too.
    static var sanitizer: String? {
        let path = buildDirectory.path
        if path.contains("/.build-asan/") { return "address" }
        if path.contains("/.build-tsan/") { return "thread" }
        return nil
    }

    var dir: URL!

    override func setUpWithError() throws {
        dir = try temporaryDirectory()
        guard FileManager.default.fileExists(atPath: Self.library.path) else {
            throw XCTSkip("\(Self.library.path) is not built (swift build builds it)")
        }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs a program to completion, its output collected through files (no pipe to fill up).
    func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let id = UUID().uuidString
        let outURL = dir.appendingPathComponent("\(id).out"), errURL = dir.appendingPathComponent("\(id).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        return Result(
            status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
            stderr: try String(contentsOf: errURL, encoding: .utf8))
    }

    /// Compiles C sources against the library (cc, or the toolchain's clang with the build's sanitizer).
    func compile(_ sources: [String], _ name: String) throws -> String {
        let root = Fixtures.root.path
        let output = dir.appendingPathComponent(name).path
        var compiler = "/usr/bin/env"
        var arguments = ["cc"]
        if let sanitizer = Self.sanitizer {
            // The toolchain's clang, beside swift, has the sanitizer runtimes.
            let swift = try run("/usr/bin/env", ["which", "swift"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            compiler =
                URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("clang").path
            arguments = ["-fsanitize=\(sanitizer)"]
        }
        arguments +=
            ["-O1", "-g", "-Wall"] + sources.map { "\(root)/\($0)" } + [
                "-I", "\(root)/Sources/CNXRuntimeC/include",
                "-L", Self.buildDirectory.path, "-lcnxruntime", "-Wl,-rpath,\(Self.buildDirectory.path)", "-lpthread",
                "-o", output,
            ]
        let r = try run(compiler, arguments)
        XCTAssertEqual(r.status, 0, "compiling \(sources): \(r.stderr)")
        return output
    }

    func tool(_ arguments: [String]) throws {
        let r = try runTool(arguments)
        XCTAssertEqual(r.status, 0, "convnext-convert \(arguments.joined(separator: " ")): \(r.stderr)")
    }

    func digits(_ name: String) -> String { Fixtures.root.appendingPathComponent("Fixtures/digits/\(name)").path }

    func bits(_ t: Tensor) -> [UInt32] { t.floats.map(\.bitPattern) }

    /// The example's logits are the CLI's, bit for bit, for the float32 and the int8 digits model
    /// at 1 and 2 threads; and the float32 ones are ONNX Runtime's within float rounding.
    func testExampleLogitsEqualTheCLI() throws {
        let classify = try compile(["examples/c/classify.c"], "classify")
        let float = dir.appendingPathComponent("digits.cnx").path, int8 = dir.appendingPathComponent("digits-int8.cnx").path
        try tool(["convert", digits("model.onnx"), float])
        try tool(["quantize", "--int8", digits("model.onnx"), int8, "--calibration", digits("calib.npy")])
        let expected = try NPY.read(path: digits("test_expected.npy"))
        for model in [float, int8] {
            for threads in ["1", "2"] {
                let label = "\((model as NSString).lastPathComponent) threads \(threads)"
                let cli = dir.appendingPathComponent("cli.npy").path, c = dir.appendingPathComponent("c.npy").path
                try tool(["run", model, "--input", digits("test.npy"), "--output", cli, "--threads", threads])
                let r = try run(classify, [model, digits("test.npy"), "--threads", threads, "--top", "3", "--output", c])
                XCTAssertEqual(r.status, 0, "\(label): \(r.stderr)")
                XCTAssertTrue(r.stdout.contains("ran on [360, 3, 32, 32] -> [360, 10]"), r.stdout)
                let a = try NPY.read(path: c), b = try NPY.read(path: cli)
                XCTAssertEqual(a.shape, [360, 10], label)
                XCTAssertEqual(bits(a), bits(b), "\(label): the C API and the CLI differ")
                if model == float {
                    XCTAssertLessThan(relativeError(a.floats, expected.floats), 1e-5, "\(label) vs ONNX Runtime")
                } else {
                    let agree = zip(argmaxRows(a.floats, cols: 10), argmaxRows(expected.floats, cols: 10)).filter { $0 == $1 }.count
                    XCTAssertGreaterThan(agree, 350, "\(label): int8 top-1 agreement with ONNX Runtime")
                }
            }
        }
    }

    /// Class names and preprocessing from a timm hub folder's config.json reach C.
    func testExampleShowsMetadata() throws {
        let classify = try compile(["examples/c/classify.c"], "classify")
        let hub = Fixtures.root.appendingPathComponent("Fixtures/checkpoints/timm_linear")
        let model = dir.appendingPathComponent("hub.cnx").path
        try tool(["convert", hub.appendingPathComponent("hub").path, model])
        let r = try run(classify, [model, hub.appendingPathComponent("input.npy").path, "--top", "2", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("input input: float32 [?, 3, ?, ?]"), r.stdout)
        XCTAssertTrue(r.stdout.contains("output logits: float32 [?, 10]"), r.stdout)
        XCTAssertTrue(
            r.stdout.contains("preprocessing: 256x256, crop_pct 0.9, bilinear, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"),
            r.stdout)
        XCTAssertTrue(r.stdout.contains("class names: 10"), r.stdout)
        // The top class of each row, named, as PyTorch ranks them.
        let expected = try NPY.read(path: hub.appendingPathComponent("expected.npy").path)
        for (row, best) in argmaxRows(expected.floats, cols: 10).enumerated() {
            XCTAssertTrue(r.stdout.contains("image \(row):  class_\(best) (\(best))"), "row \(row): \(r.stdout)")
        }
    }

    /// Missing and corrupt files, NULL pointers, wrong sizes and shapes: a status and a message
    /// each; and 8 threads running on one model give the same bits.
    func testBadInputAndConcurrency() throws {
        let program = try compile(["Tests/capi/capi_test.c"], "capi_test")
        let model = dir.appendingPathComponent("digits.cnx").path
        try tool(["convert", digits("model.onnx"), model])
        let scratch = dir.appendingPathComponent("scratch")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let r = try run(program, [model, scratch.path])
        XCTAssertEqual(r.status, 0, "\(r.stdout)\n\(r.stderr)")
        XCTAssertTrue(r.stdout.hasSuffix(" passed, 0 failed\n"), r.stdout)
    }

    /// scripts/python-test.sh: pip-installs python/ into .venv-python and runs its tests.
    func testPythonPackage() throws {
        if let sanitizer = Self.sanitizer {
            throw XCTSkip("python cannot load a library built with -fsanitize=\(sanitizer)")
        }
        guard (try? run("/usr/bin/env", ["python3", "-c", "import numpy"]))?.status == 0 else {
            throw XCTSkip("python3 with numpy is not installed")
        }
        let config = Self.buildDirectory.lastPathComponent  // debug or release
        let r = try run(
            "/bin/bash", [Fixtures.root.appendingPathComponent("scripts/python-test.sh").path],
            environment: ["CONFIG": config])
        XCTAssertEqual(r.status, 0, "\(r.stdout)\n\(r.stderr)")
        XCTAssertTrue(r.stderr.contains("\nOK"), r.stderr)
    }
}
