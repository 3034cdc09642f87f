import CNXGraph
import Foundation

/// Where the committed fixtures are, and what the fixtures script recorded about them.
public enum Fixtures: FixtureManifest {
    public static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    public static var models: URL { root.appendingPathComponent("Fixtures/models") }

    public struct Case: Decodable {
        public let input: String
        public let expected: String
    }

    public struct Entry: FixtureEntry {
        public static var folder: URL { Fixtures.models }

        public let name: String
        public let family: String
        public let source: String
        public let exporter: String
        public let opset: Int
        public let depths: [Int]
        public let dims: [Int]
        public let num_classes: Int
        public let dynamic_batch: Bool
        public let dynamic_hw: Bool
        public let cases: [Case]

        public var model: String { path("model.onnx") }
    }

    /// The built command-line tool, beside the test bundle.
    public static var tool: URL {
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("convnext-convert"),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("convnext-convert"),
            root.appendingPathComponent(".build/debug/convnext-convert"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[2]
    }
}

/// An entry of a fixture manifest (a JSON list of entries), whose files are in a folder named
/// after it inside `folder`.
public protocol FixtureEntry: Decodable {
    /// The folder that holds one folder per entry, and the manifest.
    static var folder: URL { get }
    var name: String { get }
}

extension FixtureEntry {
    public var directory: URL { Self.folder.appendingPathComponent(name) }

    /// `file` in the entry's folder.
    public func path(_ file: String) -> String { directory.appendingPathComponent(file).path }

    /// The entries that `manifest`, a file in `folder`, lists.
    public static func list(_ manifest: String = "manifest.json") throws -> [Self] {
        try JSONDecoder().decode([Self].self, from: Data(contentsOf: folder.appendingPathComponent(manifest)))
    }
}

/// A set of fixtures described by `manifest.json` in `Entry.folder`.
public protocol FixtureManifest {
    associatedtype Entry: FixtureEntry
}

extension FixtureManifest {
    /// Every entry of the manifest.
    public static func manifest() throws -> [Entry] { try Entry.list() }
}

/// Max |a - b| over max |b|: the agreement measure the project's tests use.
public func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, scale: Float = 0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    return scale > 0 ? diff / scale : diff
}

/// Index of the largest value in each row of an (rows x cols) matrix.
public func argmaxRows(_ values: [Float], cols: Int) -> [Int] {
    stride(from: 0, to: values.count, by: cols).map { start in
        var best = start
        for i in start..<start + cols where values[i] > values[best] { best = i }
        return best - start
    }
}

/// Output and exit status of the command-line tool.
public struct ToolResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs the tool; `folder` is its working directory (for relative paths), `environment` is
/// added to this process's.
public func runTool(_ arguments: [String], in folder: URL? = nil, environment: [String: String]? = nil) throws -> ToolResult {
    let process = Process()
    process.executableURL = Fixtures.tool
    process.arguments = arguments
    if let folder { process.currentDirectoryURL = folder }
    if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ToolResult(
        status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
        stderr: String(decoding: e, as: UTF8.self))
}

/// True when this test binary (and so the tool, built with the same flags) runs under a sanitizer,
/// whose shadow memory and quarantine raise every process's RSS.
public let underSanitizer: Bool = {
    let names: [String] = ["__asan_init", "__tsan_init"]
    return names.contains { name in dlsym(nil, name) != nil }
}()

/// A fresh temporary folder.
public func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
