import CNXGraph
import CNXTestSupport
import Foundation
import XCTest

/// What a run of the command-line tool did, with its peak memory.
struct MeasuredRun {
    var status: Int32
    /// The signal that ended the process, if one did.
    var signal: Int32?
    var stdout: String
    var stderr: String
    /// Peak resident set size of the tool, in bytes; nil when it could not be measured apart
    /// from this (larger) test process.
    var peakRSS: Int?
}

/// GNU time, which forks the tool from its own small process and reports the tool's peak RSS.
/// (A child spawned straight from this process inherits the test process's high-water mark:
/// Linux records the pre-exec address space's peak in `ru_maxrss`.)
private let gnuTime = "/usr/bin/time"

/// Runs the built tool and reaps it with `wait4`, measuring its peak RSS: through GNU time when
/// it is installed; otherwise straight, after resetting this process's high-water mark
/// (/proc/self/clear_refs), and then only trusted when this process is itself small. Output goes
/// through files, so no pipe can fill up.
func runMeasured(_ arguments: [String], environment: [String: String] = [:]) throws -> MeasuredRun {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let outPath = dir.appendingPathComponent("stdout").path, errPath = dir.appendingPathComponent("stderr").path
    let rssPath = dir.appendingPathComponent("rss").path
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)

    let tool = Fixtures.tool.path
    let timed = FileManager.default.isExecutableFile(atPath: gnuTime)
    let command = timed ? [gnuTime, "-f", "%M", "-o", rssPath, tool] + arguments : [tool] + arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    let argv = command.map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var ownRSS = 0
    if !timed {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        ownRSS = residentSetSize()
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, command[0], &actions, nil, argv, envp)
    guard spawned == 0 else { throw CNXError("posix_spawn \(command[0]): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        guard errno == EINTR else { throw CNXError("wait4: \(String(cString: strerror(errno)))") }
    }
    let read = readText
    var signal: Int32? = status & 0x7f != 0 && status & 0x7f != 0x7f ? status & 0x7f : nil
    var exit: Int32 = signal == nil ? (status >> 8) & 0xff : -1
    var peak: Int?
    if timed {
        // "Command terminated by signal N" when it was; then the peak in KB.
        let lines = read(rssPath).split(separator: "\n")
        if let line = lines.first(where: { $0.contains("terminated by signal") }),
            let n = line.split(separator: " ").last.flatMap({ Int32($0) })
        {
            signal = n
            exit = -1
        }
        peak = lines.last.flatMap { Int($0) }.map { $0 * 1024 }
    } else if ownRSS < 40_000_000 {
        peak = usage.ru_maxrss * 1024
    }
    return MeasuredRun(status: exit, signal: signal, stdout: read(outPath), stderr: read(errPath), peakRSS: peak)
}

/// A small text file's contents ("" when it is empty or missing), read with plain POSIX calls:
/// Foundation's file readers leak a 4 KB buffer for every empty file (swift-foundation 6.3), which
/// LeakSanitizer reports in scripts/sanitizers.sh.
func readText(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// This process's resident set size now, from /proc/self/statm.
func residentSetSize() -> Int {
    let fields = readText("/proc/self/statm").split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return Int.max }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The peak RSS a run of the tool on a hostile file of `size` bytes may reach: the tool's own
/// baseline (runtime, Foundation, OpenBLAS) plus twice the file. Anything that allocates what a
/// header claims rather than what the file holds goes far past it.
func rssBudget(fileSize size: Int) -> Int {
    (underSanitizer ? 600 : 100) * 1_000_000 + 2 * size
}

/// A fresh folder per test, with helpers to write hostile files into it and to check how the
/// tool treats them.
class HostileFileTestCase: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
        dir = nil
    }

    @discardableResult
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        // How the crasher corpora (Crashers/) were collected: every hostile file a test builds,
        // kept under the test's name, to pick the small ones from.
        if let keep = ProcessInfo.processInfo.environment["CNX_KEEP_HOSTILE"] {
            let test = name.hasPrefix("cli-") ? "cli" : String(describing: type(of: self))
            let folder = URL(fileURLWithPath: keep).appendingPathComponent(test)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(bytes).write(to: folder.appendingPathComponent(name))
        }
        return url.path
    }

    /// Runs `inspect FILE` and `FILE out.cnx` on a hostile file and checks the contract: exit
    /// status 1 (not a crash), exactly one line on stderr that names the file and contains each
    /// of `mentioning`, nothing on stdout, no output file and no temporary file, and a peak RSS
    /// within `rssBudget` of the file's size.
    func assertRejectedByCLI(_ path: String, mentioning parts: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let outDir = dir.appendingPathComponent("out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outDir) }
        let output = outDir.appendingPathComponent("out.cnx").path
        for arguments in [["inspect", path], [path, output]] {
            let command = arguments.first == "inspect" ? "inspect" : "convert"
            let r = try runMeasured(arguments)
            let label = "\(command) \(URL(fileURLWithPath: path).lastPathComponent)"
            if let signal = r.signal {
                let first = r.stderr.split(separator: "\n").first { $0.contains("rror") || $0.contains("Signal") } ?? ""
                XCTFail("\(label): killed by signal \(signal) (\(first))", file: file, line: line)
                continue
            }
            XCTAssertEqual(r.status, 1, "\(label): \(r.stderr)", file: file, line: line)
            XCTAssertEqual(r.stdout, "", "\(label) printed to stdout", file: file, line: line)
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertEqual(lines.count, 2, "\(label): expected one line on stderr, got: \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.stderr.hasPrefix("error: "), "\(label): \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.stderr.contains(path), "\(label): the message does not name the file: \(r.stderr)", file: file, line: line)
            for p in parts {
                XCTAssertTrue(r.stderr.contains(p), "\(label): '\(p)' not in: \(r.stderr)", file: file, line: line)
            }
            if let peak = r.peakRSS {
                XCTAssertLessThan(
                    peak, rssBudget(fileSize: size),
                    "\(label): peak RSS \(peak / 1_000_000) MB for a \(size)-byte file", file: file, line: line)
            }
            let left = (try? FileManager.default.contentsOfDirectory(atPath: outDir.path)) ?? []
            XCTAssertEqual(left, [], "\(label) left files behind", file: file, line: line)
        }
    }

    /// Loads with `load`, which must throw a `CNXError` naming `path` (and each of `mentioning`).
    func assertRejected(
        _ path: String, mentioning parts: [String] = [], _ load: (String) throws -> Any,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try load(path)
            XCTFail("\(URL(fileURLWithPath: path).lastPathComponent) was accepted", file: file, line: line)
        } catch let e as CNXError {
            XCTAssertTrue(e.message.hasPrefix(path), "does not start with the file: \(e.message)", file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), "more than one line: \(e.message)", file: file, line: line)
            for p in parts {
                XCTAssertTrue(e.message.contains(p), "'\(p)' not in: \(e.message)", file: file, line: line)
            }
        } catch {
            XCTFail("not a CNXError: \(error)", file: file, line: line)
        }
    }
}

/// zlib's CRC-32, to re-seal .cnx files after editing them (the format's checksums).
enum TestCRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

/// Little-endian field access on a byte array.
extension Array where Element == UInt8 {
    func u64(at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(self[offset + $1]) << (8 * UInt64($1)) }
    }

    func u32(at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[offset + $1]) << (8 * UInt32($1)) }
    }

    mutating func put(_ value: UInt64, at offset: Int, width: Int = 8) {
        for i in 0..<width { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    mutating func put(_ value: Int64, at offset: Int) { put(UInt64(bitPattern: value), at: offset) }
}

/// The smallest committed fixture, converted once per test run by the tool into a folder that
/// lives as long as the process (`Model(path:)` maps it).
enum ConvertedFixture {
    struct Converted {
        let entry: Fixtures.Entry
        let cnx: String
    }

    static let shared: Result<Converted, Error> = Result {
        let entries = try Fixtures.manifest()
        let sized = try entries.map { ($0, try FileManager.default.attributesOfItem(atPath: $0.model)[.size] as? Int ?? 0) }
        guard let entry = sized.filter({ $0.0.exporter == "legacy" }).min(by: { $0.1 < $1.1 })?.0 else {
            throw CNXError("no legacy fixture in the manifest")
        }
        let dir = try temporaryDirectory()
        let cnx = dir.appendingPathComponent("\(entry.name).cnx").path
        let r = try runTool([entry.model, cnx])
        guard r.status == 0 else { throw CNXError("converting \(entry.name) failed: \(r.stderr)") }
        return Converted(entry: entry, cnx: cnx)
    }

    static func get() throws -> Converted { try shared.get() }
}
