import CNXTestSupport
import Foundation
import XCTest

/// A conversion holds about one copy of the model: the reader's weights are released as the
/// passes replace them, and the in-memory model is released before the written file is loaded
/// and checked. Measured on the tool's peak RSS (GNU time), above the baseline of converting a
/// model a thousand times smaller. Issue #11's bound, 1.2x, is for full-size checkpoints
/// (`scripts/full-size-check.sh xxlarge`: 1.06x for ConvNeXt-XXL, 3.4 GB); at the 131 MB of this
/// test one layer's transient copy (a 1536x6144 weight, 38 MB, while a pass rewrites it) weighs
/// more, and the peak is about 1.5x. Keeping the reader's graph or the in-memory model alive
/// through the check gives 3.4x here (measured), which this test refuses.
final class ConversionMemoryTests: XCTestCase {
    /// The peak resident set size, in bytes, of `convert IN OUT`, through GNU time.
    func peakOfConversion(_ input: String, _ output: String) throws -> Int {
        let report = output + ".rss"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/time")
        process.arguments = ["-f", "%M", "-o", report, Fixtures.tool.path, "convert", input, output]
        process.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        process.standardError = err
        try process.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, stderr)
        let kb = String(decoding: try Data(contentsOf: URL(fileURLWithPath: report)), as: UTF8.self)
        return try XCTUnwrap(Int(kb.trimmingCharacters(in: .whitespacesAndNewlines)), kb) * 1024
    }

    func testPeakMemoryOfAConversionIsAboutOneModel() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else {
            throw XCTSkip("GNU time (/usr/bin/time) is not installed")
        }
        // Shadow memory and quarantine make RSS meaningless under a sanitizer.
        guard !underSanitizer else {
            throw XCTSkip("peak RSS is not measured under a sanitizer")
        }
        let dir = try temporaryDirectory()
        defer { if ProcessInfo.processInfo.environment["CNX_KEEP_MEMORY_TEST"] == nil { try? FileManager.default.removeItem(at: dir) } }
        // One block a stage at widths 192...1536: 33 M parameters, 133 MB of float32.
        let large = try SyntheticTimm(depths: [1, 1, 1, 1], dims: [192, 384, 768, 1536], kernels: [7, 7, 7, 7], classes: 1000)
            .write(to: dir, "large.safetensors")
        let small = try SyntheticTimm(depths: [1, 1, 1, 1], dims: [8, 16, 24, 32], kernels: [7, 7, 7, 7]).write(
            to: dir, "small.safetensors")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: large)[.size] as? Int)
        XCTAssertGreaterThan(size, 120_000_000)
        let baseline = try peakOfConversion(small, dir.appendingPathComponent("small.cnx").path)
        let peak = try peakOfConversion(large, dir.appendingPathComponent("large.cnx").path)
        let ratio = Double(peak - baseline) / Double(size)
        print("conversion memory: peak \(peak / 1_000_000) MB, baseline \(baseline / 1_000_000) MB, \(String(format: "%.2f", ratio))x")
        XCTAssertLessThanOrEqual(
            ratio, 1.6,
            "peak \(peak / 1_000_000) MB, baseline \(baseline / 1_000_000) MB: \(String(format: "%.2f", ratio))x the \(size / 1_000_000) MB checkpoint"
        )
    }
}
