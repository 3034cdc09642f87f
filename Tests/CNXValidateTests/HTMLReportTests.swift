import CNXFormat
import CNXGraph
import CNXTestSupport
@testable import CNXValidate
import XCTest

/// `validate --report` and `quantize --sensitivity --report`: one self-contained HTML page.
final class HTMLReportTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    var digitsFlags: [String] {
        get throws {
            let info = try ValidateFixtures.digitsInfo()
            return [
                "--crop-pct", "1", "--mean", info.mean.map { String($0) }.joined(separator: ","),
                "--std", info.std.map { String($0) }.joined(separator: ","),
            ]
        }
    }

    /// The int8 digits model, quantized by the CLI as `scripts/demo.sh` does.
    func int8Digits() throws -> String {
        let out = path("digits.int8.cnx")
        let q = try runTool([
            "quantize", "--int8", ValidateFixtures.digit("model.onnx"), out, "--calibration", ValidateFixtures.digit("calib.npy"),
        ])
        XCTAssertEqual(q.status, 0, q.stderr)
        return out
    }

    /// The digits report (int8 against its ONNX reference, on the folder of PNGs) opened in
    /// headless Chromium: the screenshot shows a page with charts, and the page's text holds the
    /// figures `--json` printed in the same run.
    func testDigitsReportInChromium() throws {
        let model = try int8Digits()
        let report = path("report.html")
        let r = try runTool(
            [
                "validate", model, "--reference", ValidateFixtures.digit("model.onnx"), "--data", ValidateFixtures.digit("test_png"),
                "--per-layer", "--max-drop", "0.5", "--json", "--report", report,
            ] + digitsFlags)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try parseJSON(r.stdout)
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertEqual(ExternalReferences.find(in: html), [], "the page must not load anything")

        let browser = try Chromium()
        // The page's text, as Chromium parsed it.
        let text = try browser.text(of: report, profile: path("profile"))
        func has(_ s: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertTrue(text.contains(s), "'\(s)' is not in the page's text", file: file, line: line)
        }
        func number(_ key: String) throws -> Double { try XCTUnwrap(o[key] as? Double, key) }
        func percent(_ v: Double) -> String { String(format: "%.2f%%", v * 100) }
        let samples = try XCTUnwrap(o["samples"] as? Int)
        XCTAssertEqual(samples, 360)
        has("\(samples) samples")
        has(percent(try number("top1_accuracy")))
        has(percent(try number("reference_top1_accuracy")))
        has(percent(try number("top5_accuracy")))
        has(percent(try number("reference_top5_accuracy")))
        has("\(try XCTUnwrap(o["correct"] as? Int)) / \(samples) correct")
        has("reference \(percent(try number("reference_top1_accuracy"))), \(try XCTUnwrap(o["reference_correct"] as? Int)) / \(samples)")
        has(String(format: "%+.2f pts", -(try number("accuracy_drop_points")) + 0))
        has(percent(try number("top1_agreement")))
        has("\(Int((try number("top1_agreement") * Double(samples)).rounded())) / \(samples) samples")
        has(percent(try number("top5_overlap")))
        has(String(format: "%.6f", try number("mean_cosine")))
        has(String(format: "%.1f dB", try number("sqnr_db")))
        has(String(format: "%.3g", try number("max_abs_diff")))
        XCTAssertEqual(o["within_budget"] as? Bool, true)
        has("PASS")
        has(String(format: "accuracy drop %.2f points is within --max-drop 0.5", try number("accuracy_drop_points")))
        // Every layer of --per-layer, with its SQNR (null in JSON: identical).
        let layers = try XCTUnwrap(o["per_layer"] as? [[String: Any]])
        XCTAssertEqual(layers.count, 13)
        for l in layers {
            has(try XCTUnwrap(l["layer"] as? String))
            if let s = l["sqnr_db"] as? Double { has(String(format: "%.1f dB", s)) } else { has("identical") }
        }
        has("bfloat16")  // the stem, which quantize --int8 gives bfloat16 weights
        // The files: the SHA-256 prefixes as sha256sum computes them, the sizes.
        for file in [model, ValidateFixtures.digit("model.onnx")] {
            let sum = try shell("/usr/bin/sha256sum", [file])
            has(String(sum.prefix(16)) + "…")
        }
        has("the reference is that file")
        // The gallery: no disagreement, so the 12 closest calls, each a JPEG of its PNG.
        has("0 of 360 samples get a different top-1 class")
        has("Closest calls")
        let thumbnails = html.components(separatedBy: "<img src=\"data:image/jpeg;base64,")
        XCTAssertEqual(thumbnails.count - 1, 12)
        let first = try XCTUnwrap(thumbnails.dropFirst().first?.prefix { $0 != "\"" })
        let jpeg = try XCTUnwrap(Data(base64Encoded: String(first)))
        let image = try jpeg.withUnsafeBytes { try ImageDecoder.decode($0) }
        XCTAssertEqual([image.width, image.height], [32, 32])

        // The screenshot: a page with content, not a blank one.
        let shot = path("report.png")
        try browser.screenshot(of: report, to: shot, width: 1280, height: 4600, profile: path("profile"))
        let png = try ImageDecoder.decode(path: shot)
        XCTAssertEqual([png.width, png.height], [1280, 4600])
        var colours = Set<Int>()
        var counts: [Int: Int] = [:]
        var dark = 0, modelBlue = 0
        for i in stride(from: 0, to: png.pixels.count, by: 3) {
            let (r, g, b) = (Int(png.pixels[i]), Int(png.pixels[i + 1]), Int(png.pixels[i + 2]))
            let rgb = r << 16 | g << 8 | b
            colours.insert(rgb)
            counts[rgb, default: 0] += 1
            if i / 3 / png.width > 140 && r + g + b < 240 { dark += 1 }  // text and marks below the page header
            if rgb == 0x1F5BB8 { modelBlue += 1 }  // the model's bars in the charts
        }
        let background = try XCTUnwrap(counts.max { $0.value < $1.value }).value
        let total = png.width * png.height
        print(
            String(
                format: "screenshot: %d colours, %.1f%% background, %d dark pixels, %d chart-blue pixels",
                colours.count, Double(background) * 100 / Double(total), dark, modelBlue))
        XCTAssertGreaterThan(colours.count, 300, "a page of text, charts and thumbnails has many colours")
        XCTAssertLessThan(Double(background) / Double(total), 0.85, "mostly one colour: blank")
        XCTAssertGreaterThan(dark, 40_000, "text and chart marks below the header")
        XCTAssertGreaterThan(modelBlue, 5_000, "the per-layer chart's bars")
    }

    /// A model that disagrees with its reference on a folder whose class names hold HTML: the
    /// gallery shows the disagreements, the confusion outlines the changed cells, and every
    /// name is escaped.
    func testDisagreementsAndEscapedNames() throws {
        let hostile = "3 <img src=x onerror=alert(1)> & \"q\" 'a'", entity = "8 &amp; <b>"
        let data = dir.appendingPathComponent("data")
        for digit in 0..<10 {
            let name = digit == 3 ? hostile : digit == 8 ? entity : String(digit)
            let folder = data.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let source = ValidateFixtures.digits.appendingPathComponent("test_png/\(digit)")
            for file in try FileManager.default.contentsOfDirectory(atPath: source.path).sorted().prefix(6) {
                try FileManager.default.copyItem(at: source.appendingPathComponent(file), to: folder.appendingPathComponent(file))
            }
        }
        // The float32 .cnx, and a copy whose head favours class 3.
        let reference = try ValidateFixtures.convertedDigits.get()
        var file = try CNXReader.load(path: reference)
        let head = try XCTUnwrap(file.graph.nodes.first { $0.op == .head })
        var bias = try XCTUnwrap(file.graph.initializers[head.inputs[2]]).floats
        bias[3] += 5
        file.graph.initializers[head.inputs[2]] = Tensor(floats: bias, shape: [bias.count])
        let model = path("favours3.cnx")
        try CNXWriter.write(file, to: model)

        let report = path("report.html")
        let r = try runTool(["validate", model, "--reference", reference, "--data", data.path, "--json", "--report", report] + digitsFlags)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try parseJSON(r.stdout)
        let samples = try XCTUnwrap(o["samples"] as? Int)
        let disagreements = Int(((1 - (try XCTUnwrap(o["top1_agreement"] as? Double))) * Double(samples)).rounded())
        XCTAssertGreaterThan(disagreements, 3, "the biased head must flip some samples")
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertEqual(ExternalReferences.find(in: html), [])
        // Escaped everywhere, never raw.
        XCTAssertFalse(html.contains("<img src=x"), "a class name reached the page unescaped")
        XCTAssertFalse(html.contains("8 &amp; <b>"), "a class name reached the page unescaped")
        XCTAssertTrue(html.contains("3 &lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot; &#39;a&#39;"))
        XCTAssertTrue(html.contains("8 &amp;amp; &lt;b&gt;"))
        // The gallery: one card per disagreement, each with the model's answer class 3.
        XCTAssertTrue(html.contains("\(disagreements) of \(samples) samples get a different top-1 class"))
        let cards = html.components(separatedBy: "<div class=\"card\">").dropFirst()
        let shown = min(disagreements, ReportCollector().galleryCap)
        XCTAssertEqual(cards.count, shown + max(0, 12 - disagreements), "disagreements up to the cap, then closest calls up to 12")
        if shown < disagreements { XCTAssertTrue(html.contains("the \(shown) whose class probabilities moved most are shown")) }
        for card in cards.prefix(shown) {
            // The name cut to 15 characters and an ellipsis, then escaped.
            XCTAssertTrue(
                card.contains("<td class=\"first\">3 &lt;img src=x on…</td>"),
                "the model's top-1 is the favoured class: \(card.prefix(600))")
            // Right only where the label is the favoured class.
            let labelIs3 = card.contains("label <b>3 &lt;img")
            XCTAssertTrue(
                card.contains(labelIs3 ? "model right, reference wrong" : "model wrong, reference right")
                    || (!labelIs3 && card.contains("both wrong")), String(card.suffix(900)))
            XCTAssertTrue(card.contains("<img src=\"data:image/jpeg;base64,"))
        }
        // Worst first.
        let moved = cards.prefix(shown).map { card -> Double in
            let s = card.components(separatedBy: " · moved ")[1]
            return Double(s.prefix { $0 != "%" }) ?? -1
        }
        XCTAssertEqual(moved, moved.sorted(by: >))
        // The confusion matrix outlines the cells that changed: some lose the flipped samples, the
        // favoured class's column gains them.
        XCTAssertGreaterThanOrEqual(html.components(separatedBy: "stroke-dasharray=\"3 2\"").count - 1, 2)
        XCTAssertTrue(
            html.contains("font-weight=\"700\" fill=\"#1c2230\">(+") || html.contains("font-weight=\"700\" fill=\"#ffffff\">(+"),
            "a cell gaining samples is marked with its change")
    }

    /// `quantize --sensitivity --report`: one bar per layer in the printed order with the printed
    /// values; bad uses refused with one line.
    func testSensitivityReport() throws {
        let report = path("sensitivity.html")
        let r = try runTool([
            "quantize", "--int8", ValidateFixtures.digit("model.onnx"), path("q.cnx"), "--calibration", ValidateFixtures.digit("calib.npy"),
            "--sensitivity", "--report", report,
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let printed = r.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") && $0.hasSuffix(" dB") }.map { line in
            let parts = line.split(separator: " ")
            return (String(parts[0]), String(parts[parts.count - 2]))
        }
        XCTAssertEqual(printed.count, 19, "8 blocks x 2 layers and 3 downsample layers; the stem and the head are not int8")
        let html = try String(contentsOfFile: report, encoding: .utf8)
        XCTAssertEqual(ExternalReferences.find(in: html), [])
        let rows = html.split(separator: "\n").filter { $0.contains("<title>") && $0.contains(" dB</text>") }
        XCTAssertEqual(rows.count, printed.count)
        for (row, (layer, value)) in zip(rows, printed) {
            XCTAssertTrue(row.contains(">\(layer)<title>"), "\(layer) out of order: \(row)")
            XCTAssertTrue(row.contains(">\(value) dB</text>"), "\(layer) \(value): \(row)")
        }
        XCTAssertTrue(html.contains("Not quantized to int8 (bfloat16 weights), not measured: stem, head."))

        let noSensitivity = try runTool([
            "quantize", "--int8", ValidateFixtures.digit("model.onnx"), path("q2.cnx"), "--calibration",
            ValidateFixtures.digit("calib.npy"), "--report", report,
        ])
        XCTAssertNotEqual(noSensitivity.status, 0)
        XCTAssertTrue(noSensitivity.stderr.contains("--report draws the per-layer sensitivity"), noSensitivity.stderr)
        let missing = path("absent/report.html")
        let bad = try runTool([
            "validate", try ValidateFixtures.convertedDigits.get(), "--reference", ValidateFixtures.digit("model.onnx"),
            "--data", ValidateFixtures.digit("test.npy"), "--report", missing,
        ])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains(missing), bad.stderr)
        XCTAssertTrue(bad.stdout.isEmpty, "nothing done before the report's folder is known to exist")
    }

    /// The sensitivity page marks the layers kept float32, and escapes layer names.
    func testSensitivityMarksKeptLayers() throws {
        let facts = ModelFacts(
            path: "m<1>.onnx", format: "onnx", bytes: 2048, sha256: String(repeating: "ab", count: 32), runtime: "", precision: "float32")
        var page = HTMLReport.Sensitivity(
            model: facts, layers: [("head", 20.5), ("stages.0.blocks.0.pw1", 31), ("x<y>", 44.25)],
            keptFloat: ["head", "stem"])
        (page.int8SQNR, page.method, page.calibrationSamples, page.measuredOn) = (35, "percentile", 16, "8 samples")
        (page.accuracy, page.maxDrop, page.command) = ((0.9, 0.88, 0.95, 2), 1, "q --x '<'")
        let html = HTMLReport.sensitivity(page)
        XCTAssertEqual(ExternalReferences.find(in: html), [])
        let lines = html.split(separator: "\n").map(String.init)
        let head = try XCTUnwrap(lines.first { $0.contains(">head<title>") })
        XCTAssertTrue(head.contains("kept float32") && head.contains("fill=\"#fbe9cf\""), head)
        XCTAssertTrue(head.contains(">20.5 dB</text>"), head)
        let other = try XCTUnwrap(lines.first { $0.contains(">stages.0.blocks.0.pw1<title>") })
        XCTAssertFalse(other.contains("kept float32") || other.contains("#fbe9cf"), other)
        XCTAssertTrue(html.contains(">x&lt;y&gt;<title>x&lt;y&gt;</title>"))
        XCTAssertFalse(html.contains("x<y>") || html.contains("m<1>"))
        XCTAssertTrue(html.contains("FAIL</span>accuracy drop 2.00 points exceeds --max-drop 1"))
        XCTAssertTrue(html.contains("Always float32, not measured: stem."))
    }

    /// The scanner finds what a page could load from elsewhere, and lets in-page references be.
    func testExternalReferenceScannerCatchesEachKind() {
        let clean = """
            <a href="#summary">x</a><img src="data:image/jpeg;base64,AAAA" alt="a src=http://x"><svg><rect fill="url(#hatch)"/></svg>
            <style>.a { background: url(data:image/png;base64,AA) }</style><p>src="http://example.com" in text is only text</p>
            """
        XCTAssertEqual(ExternalReferences.find(in: clean), [])
        let planted = [
            "<img src=\"https://example.com/a.png\">", "<img src='//example.com/a.png'>", "<a href=file:///etc/passwd>x</a>",
            "<image xlink:href=\"a.png\"/>", "<div style=\"background:url(http://x/y.png)\"></div>", "<style>@import 'x.css';</style>",
            "<style>p { background: url( 'b.png' ) }</style>", "<script>1</script>", "<link rel=stylesheet href=data:text/css,a>",
            "<iframe srcdoc=x></iframe>", "<img srcset=\"a.png 2x\">", "<use href=\"other.svg#a\"/>", "<form action=\"/post\"></form>",
            "<meta http-equiv=\"refresh\" content=\"0; url=http://x\">",
        ]
        for html in planted { XCTAssertNotEqual(ExternalReferences.find(in: html), [], html) }
    }
}

/// What an HTML page refers to outside itself: any URL-bearing attribute whose value is not a
/// `data:` URI or an in-page `#fragment`, any CSS `url(...)` that is neither, any `@import`, and
/// any element that fetches or embeds (script, link, iframe, object, embed, base, meta refresh...).
enum ExternalReferences {
    static let urlAttributes: Set<String> = [
        "src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background",
        "cite", "ping", "manifest", "codebase", "longdesc", "usemap", "icon", "lowsrc", "dynsrc", "archive",
    ]
    static let fetchingElements: Set<String> = [
        "script", "link", "iframe", "frame", "frameset", "object", "embed", "applet", "base",
        "audio", "video", "source", "track", "portal", "fencedframe",
    ]

    static func isInPage(_ value: String) -> Bool {
        let v = value.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return v.hasPrefix("data:") || v.hasPrefix("#")
    }

    /// Problems in CSS text: url(...) to elsewhere, @import.
    static func css(_ text: String) -> [String] {
        var found: [String] = []
        let lower = text.lowercased()
        if lower.contains("@import") { found.append("@import") }
        var rest = lower[...]
        while let r = rest.range(of: "url(") {
            let after = rest[r.upperBound...]
            let value = after.prefix { $0 != ")" }.trimmingCharacters(in: CharacterSet(charactersIn: " \t\n'\""))
            if !isInPage(value) { found.append("url(\(value))") }
            rest = after
        }
        return found
    }

    static func find(in html: String) -> [String] {
        var found: [String] = []
        let s = Array(html.unicodeScalars)
        var i = 0
        func skip(past marker: String) {
            let m = Array(marker.unicodeScalars)
            while i < s.count {
                if s[i] == m[0], i + m.count <= s.count, Array(s[i..<i + m.count]) == m { i += m.count; return }
                i += 1
            }
        }
        while i < s.count {
            guard s[i] == "<" else { i += 1; continue }
            if String(String.UnicodeScalarView(s[i..<min(i + 4, s.count)])) == "<!--" { skip(past: "-->"); continue }
            if i + 1 < s.count, s[i + 1] == "!" || s[i + 1] == "/" || s[i + 1] == "?" { skip(past: ">"); continue }
            i += 1
            var name = ""
            while i < s.count, !CharacterSet.whitespacesAndNewlines.contains(s[i]), s[i] != ">", s[i] != "/" {
                name.unicodeScalars.append(s[i]); i += 1
            }
            name = name.lowercased()
            if fetchingElements.contains(name) { found.append("<\(name)>") }
            var attributes: [(String, String)] = []
            // Attributes up to the end of the tag.
            while i < s.count, s[i] != ">" {
                if CharacterSet.whitespacesAndNewlines.contains(s[i]) || s[i] == "/" { i += 1; continue }
                var attr = ""
                while i < s.count, !CharacterSet.whitespacesAndNewlines.contains(s[i]), !"=>/".unicodeScalars.contains(s[i]) {
                    attr.unicodeScalars.append(s[i]); i += 1
                }
                while i < s.count, CharacterSet.whitespacesAndNewlines.contains(s[i]) { i += 1 }
                var value = ""
                if i < s.count, s[i] == "=" {
                    i += 1
                    while i < s.count, CharacterSet.whitespacesAndNewlines.contains(s[i]) { i += 1 }
                    if i < s.count, s[i] == "\"" || s[i] == "'" {
                        let quote = s[i]
                        i += 1
                        while i < s.count, s[i] != quote { value.unicodeScalars.append(s[i]); i += 1 }
                        i += 1
                    } else {
                        while i < s.count, !CharacterSet.whitespacesAndNewlines.contains(s[i]), s[i] != ">" {
                            value.unicodeScalars.append(s[i]); i += 1
                        }
                    }
                }
                attributes.append((attr.lowercased(), value))
            }
            i += 1
            for (attr, value) in attributes {
                if urlAttributes.contains(attr) || attr.hasSuffix(":href"), !isInPage(value) { found.append("\(attr)=\(value)") }
                if attr == "style" { found += css(value) }
                if attr == "srcdoc" { found.append("srcdoc") }
                if name == "meta", attr == "http-equiv", value.lowercased() == "refresh" { found.append("meta refresh") }
            }
            // Raw text elements: CSS is checked, script was already refused.
            if name == "style" || name == "script" {
                let start = i
                skip(past: "</\(name)")
                found += css(String(String.UnicodeScalarView(s[start..<max(start, i)])))
            }
        }
        return found
    }
}

/// Debian's Chromium, installed by `scripts/chromium.sh` where missing, run headless.
struct Chromium {
    let path: String

    init() throws {
        let script = Fixtures.root.appendingPathComponent("scripts/chromium.sh").path
        let out = try shell("/bin/bash", [script])
        path = try XCTUnwrap(out.split(separator: "\n").last.map(String.init), "scripts/chromium.sh printed no path")
    }

    /// Runs the browser on a local file with a time limit; returns what it printed.
    func run(_ file: String, _ flags: [String], profile: String) throws -> String {
        try shell(
            "/usr/bin/timeout",
            [
                "120", path, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--user-data-dir=\(profile)",
            ] + flags + [URL(fileURLWithPath: file).absoluteString])
    }

    /// The page's text: the DOM after loading, without markup, entities decoded.
    func text(of file: String, profile: String) throws -> String {
        var dom = try run(file, ["--dump-dom"], profile: profile)
        XCTAssertTrue(dom.contains("</html>"), "no DOM from Chromium: \(dom.prefix(300))")
        for element in ["style", "script"] {
            while let a = dom.range(of: "<\(element)"), let b = dom.range(of: "</\(element)>", range: a.upperBound..<dom.endIndex) {
                dom.removeSubrange(a.lowerBound..<b.upperBound)
            }
        }
        var text = dom.replacingOccurrences(of: "<[^>]*>", with: " ", options: .regularExpression)
        for (entity, c) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&nbsp;", " "), ("&amp;", "&")] {
            text = text.replacingOccurrences(of: entity, with: c)
        }
        return text.replacingOccurrences(of: "\\s+", with: " ", options: .regularExpression)
    }

    func screenshot(of file: String, to png: String, width: Int, height: Int, profile: String) throws {
        _ = try run(file, ["--screenshot=\(png)", "--window-size=\(width),\(height)"], profile: profile)
        XCTAssertTrue(FileManager.default.fileExists(atPath: png), "Chromium wrote no screenshot")
    }
}

/// Runs a program; its standard output, or an error with its standard error (kept in a file,
/// Chromium being talkative there).
func shell(_ program: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: program)
    process.arguments = arguments
    let out = Pipe()
    let errPath = FileManager.default.temporaryDirectory.appendingPathComponent("cnx-shell-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: errPath.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errPath) }
    let err = try FileHandle(forWritingTo: errPath)
    defer { try? err.close() }
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        let errors = (try? Data(contentsOf: errPath)) ?? Data()
        throw CNXError(
            "\(program) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(String(decoding: errors.suffix(2000), as: UTF8.self))"
        )
    }
    return String(decoding: o, as: UTF8.self)
}
