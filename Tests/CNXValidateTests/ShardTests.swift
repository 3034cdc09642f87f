import CNXGraph
import CNXIO
import CNXTestSupport
@testable import CNXValidate
import XCTest

/// Validation in shards: exact sums, shard slices, the schedulers' environments, and
/// `validate --shard ... --part` + `validate merge` against one unsharded run of the built tool.
final class ShardTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    // MARK: - ExactSum

    /// Sums whose correctly rounded values are known independently of any summation order.
    func testExactSumRoundsTheExactSum() {
        func sum(_ xs: [Double]) -> Double {
            var s = ExactSum()
            for x in xs { s.add(x) }
            return s.value
        }
        XCTAssertEqual(sum(Array(repeating: 0.1, count: 10)), 1.0)  // naive summation gives 0.9999999999999999
        XCTAssertEqual(sum([1e308, 1e308, -1e308]), 1e308)  // no overflow on the way
        XCTAssertEqual(sum([1, 1e-300, -1]), 1e-300)  // nothing lost under 1
        XCTAssertEqual(sum([1, 0x1p-53]), 1)  // a tie rounds to even (down)
        XCTAssertEqual(sum([1, 0x1p-53, 0x1p-105]), 1 + 0x1p-52)  // just above the tie rounds up
        XCTAssertEqual(sum([1 + 0x1p-52, 0x1p-53]), 1 + 0x1p-51)  // a tie rounds to even (up)
        XCTAssertEqual(sum([-3.5, 1.25]), -2.25)
        XCTAssertEqual(sum([.leastNonzeroMagnitude, .leastNonzeroMagnitude]), 2 * .leastNonzeroMagnitude)
        XCTAssertEqual(sum([.greatestFiniteMagnitude, .greatestFiniteMagnitude]), .infinity)
        XCTAssertEqual(sum([]), 0)
        XCTAssertTrue(sum([1, .nan]).isNaN)
        XCTAssertTrue(sum([.infinity, -.infinity]).isNaN)
        XCTAssertEqual(sum([.infinity, 5]), .infinity)
        // Integers below 2^53: the exact sum is the integer sum.
        var g = SystemRandomNumberGenerator()
        let ints = (0..<1000).map { _ in Int64.random(in: -(1 << 50)...(1 << 50), using: &g) }
        XCTAssertEqual(sum(ints.map(Double.init)), Double(ints.reduce(0, +)))
    }

    /// The same additions in any order, or split into parts merged in any order, give the same bits.
    func testExactSumIsIndependentOfOrderAndSplitting() throws {
        var g = SystemRandomNumberGenerator()
        let xs = (0..<2000).map { _ in Double.random(in: -1...1, using: &g) * pow(10, Double(Int.random(in: -30...30, using: &g))) }
        var whole = ExactSum()
        for x in xs { whole.add(x) }
        for _ in 0..<5 {
            var shuffled = ExactSum()
            for x in xs.shuffled(using: &g) { shuffled.add(x) }
            XCTAssertEqual(shuffled.value.bitPattern, whole.value.bitPattern)
            let cut = Int.random(in: 0...xs.count, using: &g)
            var a = ExactSum(), b = ExactSum()
            for x in xs[..<cut] { a.add(x) }
            for x in xs[cut...] { b.add(x) }
            b.add(a)
            XCTAssertEqual(b, whole)
            let back = try XCTUnwrap(ExactSum(text: b.text))
            XCTAssertEqual(back, whole)
        }
        XCTAssertNil(ExactSum(text: "xyz;0;0;0"))
        XCTAssertNil(ExactSum(text: "00"))
    }

    // MARK: - Shards

    func testShardsPartitionTheData() throws {
        for total in [0, 1, 5, 7, 50, 360] {
            for batch in [1, 3, 32] {
                for n in 1...9 {
                    var covered: [Int] = []
                    for k in 0..<n {
                        let r = try Shard(index: k, count: n).range(of: total, batch: batch)
                        XCTAssertTrue(
                            r.lowerBound % batch == 0 && (r.upperBound % batch == 0 || r.upperBound == total), "\(r) in batches of \(batch)"
                        )
                        covered += Array(r)
                    }
                    XCTAssertEqual(covered, Array(0..<total), "\(n) shards of \(total) in batches of \(batch)")
                }
            }
        }
        // 12 batches of 32 among 7 shards: 1 or 2 batches each.
        XCTAssertEqual(try Shard(index: 0, count: 7).range(of: 360, batch: 32), 0..<32)
        XCTAssertEqual(try Shard(index: 6, count: 7).range(of: 360, batch: 32), 320..<360)
        XCTAssertThrowsError(try Shard(index: 4, count: 4))
        XCTAssertThrowsError(try Shard(index: 0, count: 0))
    }

    func testShardFromTheSchedulersEnvironment() throws {
        XCTAssertEqual(try Shard.parse("2/5", shards: nil, environment: [:]), try Shard(index: 2, count: 5))
        XCTAssertThrowsError(try Shard.parse("2/5", shards: 4, environment: [:]))
        XCTAssertThrowsError(try Shard.parse("5/5", shards: nil, environment: [:]))
        XCTAssertThrowsError(try Shard.parse("1-5", shards: nil, environment: [:]))
        // Slurm: --array=0-3 sets the ID and the count (and min, max).
        XCTAssertEqual(
            try Shard.parse("auto", shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"]),
            try Shard(index: 3, count: 4))
        // --array=1-4: IDs from 1.
        XCTAssertEqual(
            try Shard.parse(
                "auto", shards: nil,
                environment: [
                    "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1",
                    "SLURM_ARRAY_TASK_MAX": "4",
                ]), try Shard(index: 0, count: 4))
        // --array=0-10:5 gives 0, 5, 10.
        XCTAssertEqual(
            try Shard.parse(
                "auto", shards: nil,
                environment: [
                    "SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_MIN": "0",
                    "SLURM_ARRAY_TASK_MAX": "10", "SLURM_ARRAY_TASK_STEP": "5",
                ]),
            try Shard(index: 2, count: 3))
        XCTAssertThrowsError(try Shard.parse("auto", shards: 5, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"]))
        XCTAssertThrowsError(
            try Shard.parse("auto", shards: nil, environment: ["SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"]))
        // Kubernetes Indexed Job: the index, and the completions as --shards.
        XCTAssertEqual(try Shard.parse("auto", shards: 7, environment: ["JOB_COMPLETION_INDEX": "6"]), try Shard(index: 6, count: 7))
        XCTAssertThrowsError(try Shard.parse("auto", shards: nil, environment: ["JOB_COMPLETION_INDEX": "6"]))
        XCTAssertThrowsError(try Shard.parse("auto", shards: 7, environment: ["JOB_COMPLETION_INDEX": "7"]))
        XCTAssertThrowsError(try Shard.parse("auto", shards: nil, environment: [:]))
    }

    // MARK: - The built tool

    /// The digits model quantized to int8 and its float32 .cnx: two fast models whose figures
    /// are not trivial (SQNR, cosine), with labels from the class folders.
    static let models: Result<(int8: String, float: String), Error> = Result {
        let dir = try temporaryDirectory()
        let float = dir.appendingPathComponent("digits.cnx").path, int8 = dir.appendingPathComponent("digits.int8.cnx").path
        for args in [
            ["convert", ValidateFixtures.digit("model.onnx"), float],
            ["quantize", "--int8", ValidateFixtures.digit("model.onnx"), int8, "--calibration", ValidateFixtures.digit("calib.npy")],
        ] {
            let r = try runTool(args)
            guard r.status == 0 else { throw CNXError("\(args.joined(separator: " ")): \(r.stderr)") }
        }
        return (int8, float)
    }

    func pngData() throws -> [String] {
        let info = try ValidateFixtures.digitsInfo()
        return [
            "--data", ValidateFixtures.digit("test_png"), "--crop-pct", "1",
            "--mean", info.mean.map { String($0) }.joined(separator: ","), "--std", info.std.map { String($0) }.joined(separator: ","),
        ]
    }

    var npyData: [String] { ["--data", ValidateFixtures.digit("test.npy"), "--labels", ValidateFixtures.digit("test_labels.npy")] }

    /// The report with its timings masked: what must be equal bit for bit.
    func withoutTimings(_ json: String) -> String {
        json.replacingOccurrences(of: #""(seconds|images_per_second)": [-0-9.e+]+"#, with: #""$1": T"#, options: .regularExpression)
    }

    func shardedRun(_ model: String, reference: [String], data: [String], shards n: Int, extra: [String] = []) throws -> (
        parts: [String], merged: ToolResult
    ) {
        var parts: [String] = []
        for k in 0..<n {
            let part = dir.appendingPathComponent("part-\(n)-\(k).json").path
            let r = try runTool(["validate", model] + reference + data + extra + ["--shard", "\(k)/\(n)", "--part", part])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdout, "", "a shard prints nothing on stdout")
            parts.append(part)
        }
        return (parts, try runTool(["validate", "merge"] + parts.reversed() + ["--json", "--per-class"]))
    }

    func testMergedShardsEqualTheUnshardedRunOnImages() throws {
        let (int8, float) = try Self.models.get()
        let reference = ["--reference", float]
        let whole = try runTool(["validate", int8] + reference + (try pngData()) + ["--json", "--per-class", "--per-layer"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        let o = try parseJSON(whole.stdout)
        XCTAssertEqual(o["samples"] as? Int, 360)
        XCTAssertLessThan(try XCTUnwrap(o["sqnr_db"] as? Double), 80, "int8 against float32: a figure whose sums matter")
        for n in [1, 3, 4, 7] {
            let (_, merged) = try shardedRun(int8, reference: reference, data: try pngData(), shards: n, extra: ["--per-layer"])
            XCTAssertEqual(merged.status, 0, merged.stderr)
            XCTAssertEqual(withoutTimings(merged.stdout), withoutTimings(whole.stdout), "\(n) shards")
        }
    }

    func testMergedShardsEqualTheUnshardedRunOnANpyBatchAgainstONNX() throws {
        let (int8, _) = try Self.models.get()
        let reference = ["--reference", ValidateFixtures.digit("model.onnx")]
        let whole = try runTool(["validate", int8] + reference + npyData + ["--json", "--per-class"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        for n in [1, 3, 4, 7] {
            let (_, merged) = try shardedRun(int8, reference: reference, data: npyData, shards: n)
            XCTAssertEqual(merged.status, 0, merged.stderr)
            XCTAssertEqual(withoutTimings(merged.stdout), withoutTimings(whole.stdout), "\(n) shards")
        }
        // The gate applies to the merged figures.
        let (parts, _) = try shardedRun(int8, reference: reference, data: npyData, shards: 4)
        let gate = try runTool(["validate", "merge"] + parts + ["--max-drop", "0"])
        let o = try parseJSON(whole.stdout)
        let drop = try XCTUnwrap(o["accuracy_drop_points"] as? Double)
        XCTAssertEqual(gate.status, drop > 0 ? 2 : 0, gate.stderr)
    }

    /// The reference paid once: its logits saved by a (sharded) run serve later runs in its place.
    func testSavedReferenceLogitsGiveTheSameFigures() throws {
        let (int8, float) = try Self.models.get()
        let logits = dir.appendingPathComponent("ref-{shard}.npy").path
        let whole = try runTool(["validate", int8, "--reference", float, "--save-logits", logits] + npyData + ["--json"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        let saved = logits.replacingOccurrences(of: "{shard}", with: "all")
        let t = try NPY.read(path: saved)
        XCTAssertEqual(t.shape, [360, 10])
        let again = try runTool(["validate", int8, "--reference-logits", saved] + npyData + ["--json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        var a = try parseJSON(whole.stdout), b = try parseJSON(again.stdout)
        for key in ["model", "reference"] { a[key] = nil; b[key] = nil }
        XCTAssertEqual(NSDictionary(dictionary: a), NSDictionary(dictionary: b))
        // Shards write their own rows and read them back by the same {shard} name.
        var parts: [String] = []
        for k in 0..<3 {
            let part = dir.appendingPathComponent("lp-\(k).json").path
            let r1 = try runTool(
                ["validate", int8, "--reference", float, "--save-logits", logits] + npyData + ["--shard", "\(k)/3", "--part", part])
            XCTAssertEqual(r1.status, 0, r1.stderr)
            let r2 = try runTool(["validate", int8, "--reference-logits", logits] + npyData + ["--shard", "\(k)/3", "--part", part])
            XCTAssertEqual(r2.status, 0, r2.stderr)
            parts.append(part)
        }
        let merged = try runTool(["validate", "merge"] + parts + ["--json"])
        XCTAssertEqual(merged.status, 0, merged.stderr)
        var m = try parseJSON(merged.stdout)
        m["model"] = nil
        m["reference"] = nil
        XCTAssertEqual(NSDictionary(dictionary: m), NSDictionary(dictionary: b))
        // Logits that do not fit the data or the model are refused.
        let wrong = dir.appendingPathComponent("wrong.npy").path
        try NPY.write(Tensor(zeros: .float32, shape: [359, 10]), path: wrong)
        let bad = try runTool(["validate", int8, "--reference-logits", wrong] + npyData)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("359 rows") && bad.stderr.contains("360 samples"), bad.stderr)
        try NPY.write(Tensor(zeros: .float32, shape: [360, 9]), path: wrong)
        let bad2 = try runTool(["validate", int8, "--reference-logits", wrong] + npyData)
        XCTAssertEqual(bad2.status, 1)
        XCTAssertTrue(bad2.stderr.contains("9 classes"), bad2.stderr)
    }

    /// `validate merge --report`: the merged figures on one self-contained page.
    func testMergeWritesTheReport() throws {
        let (int8, float) = try Self.models.get()
        let (parts, merged) = try shardedRun(
            int8, reference: ["--reference", float], data: try pngData(), shards: 3, extra: ["--per-layer"])
        XCTAssertEqual(merged.status, 0, merged.stderr)
        let o = try parseJSON(merged.stdout)
        let page = dir.appendingPathComponent("merged.html").path
        let r = try runTool(["validate", "merge"] + parts + ["--report", page, "--max-drop", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOfFile: page, encoding: .utf8)
        XCTAssertEqual(ExternalReferences.find(in: html), [])
        XCTAssertTrue(html.contains("360 samples"), "the sample count")
        let sqnr = try XCTUnwrap(o["sqnr_db"] as? Double)
        XCTAssertTrue(html.contains(String(format: "%.1f dB", sqnr)), "the merged SQNR \(sqnr)")
        XCTAssertTrue(html.contains("stages.0.blocks.0"), "per-layer rows from shard 0's part")
        // A part is never replaced by the report.
        let before = try Data(contentsOf: URL(fileURLWithPath: parts[0]))
        let refused = try runTool(["validate", "merge"] + parts + ["--report", parts[0]])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: parts[0])), before)
    }

    /// Missing, repeated and foreign parts: one line naming them, exit 1.
    func testMergeRefusesPartsThatDoNotMakeOneRun() throws {
        let (int8, float) = try Self.models.get()
        let (parts, merged) = try shardedRun(int8, reference: ["--reference", float], data: npyData, shards: 4)
        XCTAssertEqual(merged.status, 0, merged.stderr)
        func refused(_ args: [String], _ says: String, line: UInt = #line) throws {
            let r = try runTool(["validate", "merge"] + args)
            XCTAssertEqual(r.status, 1, r.stderr, line: line)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, line: line)
            XCTAssertTrue(r.stderr.contains(says), "\(r.stderr) should say \(says)", line: line)
        }
        try refused([parts[0], parts[1], parts[3]], "shards missing: 2/4")
        try refused(parts + [parts[2]], "shard 2/4 is given twice")
        // A part of another model (the float32 one against itself), of another shard count, of other data.
        let foreign = dir.appendingPathComponent("foreign.json").path
        XCTAssertEqual(try runTool(["validate", float, "--reference", float] + npyData + ["--shard", "1/4", "--part", foreign]).status, 0)
        try refused([parts[0], foreign, parts[2], parts[3]], "the model differs")
        let other = dir.appendingPathComponent("other.json").path
        XCTAssertEqual(try runTool(["validate", int8, "--reference", float] + npyData + ["--shard", "1/3", "--part", other]).status, 0)
        try refused([parts[0], other], "of 3 shards")
        let images = dir.appendingPathComponent("images.json").path
        XCTAssertEqual(
            try runTool(["validate", int8, "--reference", float] + (try pngData()) + ["--shard", "1/4", "--part", images]).status, 0)
        try refused([parts[0], images, parts[2], parts[3]], "differs")
        let text = dir.appendingPathComponent("not-a-part.json").path
        try Data("{\"samples\": 3}".utf8).write(to: URL(fileURLWithPath: text))
        try refused([text], "not a validation part")
        try refused([dir.appendingPathComponent("nosuch.json").path], "no such file")
    }

    /// `--shard auto` in a process whose environment is a Slurm array task's.
    func testShardAutoReadsTheEnvironmentOfTheTool() throws {
        let (int8, float) = try Self.models.get()
        let part = dir.appendingPathComponent("auto.json").path
        let process = Process()
        process.executableURL = Fixtures.tool
        process.arguments = ["validate", int8, "--reference", float] + npyData + ["--shard", "auto", "--part", part]
        var env = ProcessInfo.processInfo.environment
        env["SLURM_ARRAY_TASK_ID"] = "2"
        env["SLURM_ARRAY_TASK_COUNT"] = "5"
        process.environment = env
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
        let p = try ValidationPart.read(path: part)
        XCTAssertEqual(p.shard, try Shard(index: 2, count: 5))
        XCTAssertEqual(p.range, 128..<224)  // 12 batches of 32: shard 2 of 5 has batches 4, 5 and 6
        XCTAssertTrue(text.contains("shard 2/5: samples 128..<224 of 360"), text)
    }
}
