import CNXGraph
import Foundation

/// The self-contained HTML pages `validate --report` and `quantize --sensitivity --report` write:
/// one file, inline SVG charts, thumbnails as JPEG `data:` URIs, no script and no reference to
/// anything outside the page; laid out for a screen and for print, every chart labelled in text.
public enum HTMLReport {
    /// What the validation page needs besides the result.
    public struct Context {
        public var model: ModelFacts
        public var reference: ModelFacts
        /// Class names by id (the data's class folders, else the model's, else numbers).
        public var classNames: [String]
        /// The samples (for thumbnails).
        public var data: Dataset?
        /// Samples per prediction, for the latency per batch.
        public var batch = 32
        public var maxDrop: Double?
        /// The command line, for the footer.
        public var command = ""
        /// When the report was made, for the footer (nil: not said).
        public var date: Date? = Date()

        public init(model: ModelFacts, reference: ModelFacts, classNames: [String]) {
            (self.model, self.reference, self.classNames) = (model, reference, classNames)
        }
    }

    /// Writes `html` to `path` whole or not at all (a temporary file renamed into place).
    public static func write(_ html: String, to path: String) throws {
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CNXError("\(path): cannot write the report (\(error.localizedDescription))")
        }
    }

    // MARK: - Validation

    public static func validation(_ result: ValidationResult, collector: ReportCollector?, context c: Context) -> String {
        var sections: [(id: String, label: String, html: String)] = [("summary", "Summary", summary(result, c))]
        sections.append(("layers", "Per layer", perLayer(result, c)))
        if !result.isMultiOutput {
            sections.append(("classes", "Per class", perClass(result, collector, c)))
            sections.append(("gallery", "Disagreements", gallery(result, collector, c)))
        }
        sections.append(("speed", "Speed and size", speed(result, c)))
        let m = base(c.model.path), r = base(c.reference.path)
        let subtitle =
            "\(result.samples) samples of \(HTML.escape(base(result.dataPath)))"
            + (result.isMultiOutput ? ", \(result.outputs?.count ?? 0) outputs compared" : ", \(result.metrics.classes) classes")
        return HTML.page(
            title: "Validation: \(m) against \(r)",
            heading: "Validation: \(HTML.escape(m)) against \(HTML.escape(r))",
            subtitle: subtitle, sections: sections, footer: footer("validate", c.command, c.date))
    }

    static func base(_ path: String) -> String {
        let b = (path as NSString).lastPathComponent
        return b.isEmpty ? path : b
    }

    static func footer(_ what: String, _ command: String, _ date: Date?) -> String {
        var s = "Written by <b>convnext-convert \(HTML.escape(what))</b>"
        if let date {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            s += " on \(HTML.escape(f.string(from: date)))"
        }
        s += ". Self-contained: no script, nothing loaded from elsewhere."
        if !command.isEmpty { s += "<br>Command: <span class=\"mono\">\(HTML.escape(command))</span>" }
        return s
    }

    static func tile(_ key: String, _ value: String, _ sub: String = "") -> String {
        "<div class=\"tile\"><div class=\"k\">\(HTML.escape(key))</div><div class=\"v\">\(HTML.escape(value))</div>"
            + (sub.isEmpty ? "" : "<div class=\"s\">\(HTML.escape(sub))</div>") + "</div>"
    }

    static func summary(_ result: ValidationResult, _ c: Context) -> String {
        let m = result.metrics
        var s = "<h2>Summary</h2>\n"
        s +=
            "<p class=\"lede\">The model, <b>\(HTML.escape(base(c.model.path)))</b>, and the reference, <b>\(HTML.escape(base(c.reference.path)))</b>, "
            + "ran on the same \(result.samples) samples; the figures compare their outputs with each other"
            + (m.hasLabels ? " and with the labels." : ".") + "</p>\n"
        // Verdict.
        if result.isMultiOutput {
            s += "<div class=\"verdict\"><span class=\"tag\">INFO</span>\(HTML.escape(result.multiOutputNote))</div>\n"
        } else if let maxDrop = c.maxDrop {
            let ok = result.withinBudget(maxDrop: maxDrop)
            s +=
                "<div class=\"verdict \(ok ? "pass" : "fail")\"><span class=\"tag\">\(ok ? "PASS" : "FAIL")</span>"
                + "\(HTML.escape(result.budgetVerdict(maxDrop: maxDrop)))</div>\n"
        } else {
            let change = m.hasLabels ? "top-1 accuracy \(HTML.points(-m.accuracyDropPoints)) points, " : ""
            s +=
                "<div class=\"verdict\"><span class=\"tag\">NO BUDGET</span>\(change)top-1 agreement \(HTML.percent(m.top1Agreement)); "
                + "give --max-drop X for a pass/fail verdict</div>\n"
        }
        // Headline figures.
        s += "<div class=\"tiles\">"
        if result.isMultiOutput {
            s += tile("Worst mean cosine", HTML.cosine(result.worstMeanCosine), "over \(result.outputs?.count ?? 0) outputs")
            s += tile("Worst SQNR", HTML.db(result.worstSQNRDB))
            s += tile("Largest |difference|", HTML.general(result.largestAbsDiff))
        } else {
            if m.hasLabels {
                s += tile(
                    "Top-1 accuracy", HTML.percent(m.modelTop1Accuracy),
                    "\(m.modelTop1) / \(m.labelled) correct; reference \(HTML.percent(m.referenceTop1Accuracy)), \(m.referenceTop1) / \(m.labelled)"
                )
                if m.classes >= 5 {
                    s += tile("Top-5 accuracy", HTML.percent(m.modelTop5Accuracy), "reference \(HTML.percent(m.referenceTop5Accuracy))")
                }
                s += tile("Accuracy change", HTML.points(-m.accuracyDropPoints) + " pts", "model minus reference, top-1")
            }
            s += tile("Top-1 agreement", HTML.percent(m.top1Agreement), "\(m.top1Agreements) / \(result.samples) samples")
            s += tile("Top-\(m.k) overlap", HTML.percent(m.top5Overlap), "shared classes in each top-\(m.k)")
            s += tile("Logits SQNR", HTML.db(m.sqnrDB), "reference signal over the difference")
            s += tile("Mean cosine", HTML.cosine(m.meanCosine), "of each sample's logits")
            s += tile("Largest |difference|", HTML.general(Double(m.maxAbsDiff)), "in any logit")
        }
        s += "</div>\n"
        // The two files.
        func row(_ key: String, _ a: String, _ b: String) -> String { "<tr><td>\(key)</td><td>\(a)</td><td>\(b)</td></tr>\n" }
        let mf = c.model, rf = c.reference
        func sha(_ f: ModelFacts) -> String {
            guard let h = f.sha256 else { return "unreadable" }
            return "<span class=\"mono\" title=\"\(h)\">\(HTML.escape(String(h.prefix(16))))…</span>"
        }
        s +=
            "<h3>Files</h3>\n<table class=\"facts two\"><colgroup><col style=\"width:16%\"><col style=\"width:42%\"><col style=\"width:42%\"></colgroup><tr><th></th><th>model</th><th>reference</th></tr>\n"
        s += row("file", "<span class=\"mono\">\(HTML.escape(mf.path))</span>", "<span class=\"mono\">\(HTML.escape(rf.path))</span>")
        s += row("format", HTML.escape(mf.format), HTML.escape(rf.format))
        if mf.architecture != nil || rf.architecture != nil {
            s += row("architecture", HTML.escape(mf.architecture ?? "-"), HTML.escape(rf.architecture ?? "-"))
        }
        s += row("precision", HTML.escape(mf.precision), HTML.escape(rf.precision))
        s += row("size", HTML.bytes(mf.bytes), HTML.bytes(rf.bytes))
        s += row("SHA-256", sha(mf), sha(rf))
        s += row("runs on", HTML.escape(mf.runtime), HTML.escape(rf.runtime))
        if let source = mf.sourceSHA256 {
            let same = rf.sha256 == source
            let what =
                "converted from \(HTML.escape(mf.sourceFileName ?? "a file")) (SHA-256 \(HTML.escape(String(source.prefix(16))))…): "
                + (same
                    ? "<span class=\"good\">the reference is that file</span>" : "<span class=\"bad\">the reference is another file</span>")
            s += "<tr><td>source</td><td colspan=\"2\">\(what)</td></tr>\n"
        }
        s += "</table>\n"
        // The data.
        s += "<h3>Data</h3>\n<table class=\"facts\">\n"
        s +=
            "<tr><td>samples</td><td><span class=\"mono\">\(HTML.escape(result.dataPath))</span>: \(result.samples) samples of "
            + "\(result.sampleShape.map(String.init).joined(separator: "x"))</td></tr>\n"
        if !result.isMultiOutput { s += "<tr><td>classes</td><td>\(m.classes)</td></tr>\n" }
        s +=
            "<tr><td>labels</td><td>\(result.labelSource.map { HTML.escape($0) } ?? "none (model compared with reference only)")</td></tr>\n"
        s +=
            "<tr><td>preprocessing</td><td>\(result.preprocessing.map { HTML.escape($0.summary) } ?? "none: the .npy batch is already preprocessed")</td></tr>\n"
        s += "</table>\n"
        if let outputs = result.outputs {
            s +=
                "<h3>Outputs</h3>\n<table><tr><th>output</th><th>shape</th><th class=\"num\">mean cosine</th><th class=\"num\">SQNR</th><th class=\"num\">largest |difference|</th></tr>\n"
            for o in outputs {
                s +=
                    "<tr><td class=\"mono\">\(HTML.escape(o.name))</td><td>\(o.shape.map(String.init).joined(separator: "x"))</td>"
                    + "<td class=\"num\">\(HTML.cosine(o.meanCosine))</td><td class=\"num\">\(HTML.db(o.sqnrDB))</td>"
                    + "<td class=\"num\">\(HTML.general(Double(o.maxAbsDiff)))</td></tr>\n"
            }
            s += "</table>\n"
        }
        return s
    }

    // MARK: Per layer

    static func perLayer(_ result: ValidationResult, _ c: Context) -> String {
        var s = "<h2>Where the error enters</h2>\n"
        guard let layers = result.perLayer, !layers.isEmpty else {
            return s
                + "<p class=\"lede\">Not measured: run <span class=\"mono\">validate</span> with <span class=\"mono\">--per-layer</span> "
                + "to see the SQNR of every stem, block, downsample and head output against the reference's.</p>"
        }
        let precisions = c.model.layerPrecisions.count == layers.count ? c.model.layerPrecisions : []
        let floatMarked = c.model.hasInt8 && !precisions.isEmpty
        let rows = layers.enumerated().map { i, l in
            SVGChart.Row(
                label: l.name, note: precisions.isEmpty ? "" : precisions[i] == "float32" && floatMarked ? "float32 (kept)" : precisions[i],
                values: [l.sqnrDB, l.localSQNRDB], marked: floatMarked && precisions[i].contains("float32"))
        }
        let n = layers.first?.shape.first ?? 0
        s +=
            "<p class=\"lede\">SQNR of each layer's output against the same layer of the reference, on the first \(n) samples "
            + "(higher is better: 20 dB is a 10% RMS error, 40 dB 1%). The solid bar is the model run from the input, the error accumulated "
            + "up to that layer; the hatched bar is the layer alone, given the reference's input, the error it adds itself."
            + (floatMarked ? " Layers kept in float32 are shaded and labelled." : "") + "</p>\n"
        s +=
            "<figure>"
            + SVGChart.bars(
                rows: rows,
                series: [
                    .init(name: "model run from the input", style: "solid"),
                    .init(name: "this layer alone", style: "hatch"),
                ],
                noteHeader: precisions.isEmpty ? "" : "precision", format: { String(format: "%.1f dB", $0) },
                axisTitle: "SQNR (dB) against the reference", markedLegend: floatMarked ? "kept float32" : nil,
                minimumMax: 10)
        // In words: the largest loss between consecutive layers and the weakest layer alone.
        var words: [String] = []
        if let first = layers.first(where: { $0.sqnrDB.isFinite }) {
            words.append("The outputs first differ at <b>\(HTML.escape(first.name))</b> (\(HTML.db(first.sqnrDB)))")
        } else {
            words.append("Every layer's output is identical to the reference's")
        }
        if let weakest = layers.filter({ $0.localSQNRDB?.isFinite ?? false }).min(by: { $0.localSQNRDB! < $1.localSQNRDB! }) {
            words.append(
                "the layer that adds the most error by itself is <b>\(HTML.escape(weakest.name))</b> (\(HTML.db(weakest.localSQNRDB!)) alone)"
            )
        }
        if let last = layers.last { words.append("the head ends at \(HTML.db(last.sqnrDB))") }
        s += "<figcaption>\(words.joined(separator: "; ")).</figcaption></figure>\n"
        return s
    }

    // MARK: Per class

    static func name(_ c: Context, _ id: Int) -> String { id < c.classNames.count ? c.classNames[id] : String(id) }

    static func perClass(_ result: ValidationResult, _ collector: ReportCollector?, _ c: Context) -> String {
        let m = result.metrics
        var s = "<h2>Per class</h2>\n"
        let classes = m.classes
        if m.hasLabels {
            let all = m.classAccuracies
            let order = all.sorted { $0.changePoints != $1.changePoints ? $0.changePoints < $1.changePoints : $0.id < $1.id }
            var shown = order
            let changed = all.filter { $0.model != $0.reference }.count
            if order.count > 40 {
                let worse = order.filter { $0.changePoints < 0 }.prefix(30)
                let better = order.filter { $0.changePoints > 0 }.suffix(10)
                shown = Array(worse) + Array(better)
            }
            let counted = all.count < classes ? "\(all.count) classes with samples" : "\(all.count) classes"
            s +=
                "<p class=\"lede\">Top-1 accuracy of each class under the reference (○) and the model (◆), worst change first; "
                + "\(changed) of \(counted) changed."
                + (shown.count < order.count && !shown.isEmpty
                    ? " Shown: the \(shown.count) classes that changed most; every class is in the table below." : "")
                + "</p>\n"
            if !shown.isEmpty {
                let pairs = shown.map { a in
                    SVGChart.Pair(
                        label: name(c, a.id), detail: "\(a.samples) samples", reference: a.reference, model: a.model,
                        change: HTML.points(a.changePoints), worse: a.changePoints < 0, better: a.changePoints > 0)
                }
                s += "<figure>" + SVGChart.dumbbell(pairs, referenceName: "reference", modelName: "model") + "</figure>\n"
            } else {
                s += "<p class=\"note\">No class changed its accuracy.</p>\n"
            }
            if shown.count < order.count {
                s +=
                    "<details><summary>All \(order.count) classes</summary>\n<table><tr><th>class</th><th class=\"num\">samples</th>"
                    + "<th class=\"num\">reference</th><th class=\"num\">model</th><th class=\"num\">change (points)</th></tr>\n"
                for a in order {
                    s +=
                        "<tr><td>\(HTML.escape(name(c, a.id)))</td><td class=\"num\">\(a.samples)</td><td class=\"num\">\(HTML.percent(a.reference))</td>"
                        + "<td class=\"num\">\(HTML.percent(a.model))</td><td class=\"num\">\(HTML.points(a.changePoints))</td></tr>\n"
                }
                s += "</table></details>\n"
            }
        } else {
            s +=
                "<p class=\"lede\">No labels, so no accuracy per class: the confusion below is of the reference's top-1 class with the model's.</p>\n"
        }
        guard let collector, collector.classes > 0 else { return s }
        // The confusion matrix (labels against the model; without labels, the reference against the model).
        let labelled = m.hasLabels
        let counts = labelled ? collector.modelConfusion : collector.flips
        var change: [Int: Int] = [:]
        if labelled {
            for key in Set(collector.modelConfusion.keys).union(collector.referenceConfusion.keys) {
                let d = (collector.modelConfusion[key] ?? 0) - (collector.referenceConfusion[key] ?? 0)
                if d != 0 { change[key] = d }
            }
        }
        let names = (0..<classes).map { name(c, $0) }
        var matrix = ""
        if classes <= 100 {
            matrix +=
                "<h3>Confusion matrix</h3>\n<p class=\"note\">"
                + (labelled
                    ? "Rows: the label; columns: the model's top-1 class. Shade: share of the row; numbers: samples. "
                        + "Cells whose count differs from the reference's have a dashed outline and the change in brackets."
                    : "Rows: the reference's top-1 class; columns: the model's. Off the diagonal, the samples where they disagree.")
                + "</p>\n<figure>"
            matrix += SVGChart.heatmap(
                size: classes, names: names, counts: counts, change: change,
                rowTitle: labelled ? "label" : "reference's top-1", columnTitle: "model's top-1")
            matrix += "</figure>\n"
        }
        // Most confused pairs, and the pairs the two models disagree on.
        var lists = ""
        // By count, then by the change against the reference.
        func changeOf(_ p: (row: Int, column: Int, count: Int)) -> Int { abs(change[p.row * classes + p.column] ?? 0) }
        let pairs = collector.pairs(counts).enumerated().sorted {
            ($0.element.count, changeOf($0.element), -$0.offset) > ($1.element.count, changeOf($1.element), -$1.offset)
        }.map(\.element)
        let limit = classes <= 100 ? 12 : 25
        if labelled {
            lists += pairTable(
                "Most confused pairs", empty: "No sample is misclassified.",
                headers: ["label", "model's answer", "model", "reference", "change"], pairs: pairs, limit: limit
            ) { p in
                let r = collector.referenceConfusion[p.row * classes + p.column] ?? 0
                return [HTML.escape(names[p.row]), HTML.escape(names[p.column]), "\(p.count)", "\(r)", SVGChart.signed(p.count - r)]
            }
        }
        if labelled || classes > 100 {
            lists += pairTable(
                "Where model and reference disagree", empty: "They agree on every sample's top-1 class.",
                headers: ["reference's top-1", "model's top-1", "samples"], pairs: collector.pairs(collector.flips), limit: limit
            ) { p in
                [HTML.escape(names[p.row]), HTML.escape(names[p.column]), "\(p.count)"]
            }
        }
        // A small matrix leaves room for the lists beside it; without a matrix, the lists go side by side.
        if !matrix.isEmpty && classes <= 30 && !lists.isEmpty {
            s += "<div class=\"grid2\"><div>\(matrix)</div><div>\(lists)</div></div>\n"
        } else if matrix.isEmpty, let split = lists.range(of: "<h3>Where model and reference disagree</h3>"),
            split.lowerBound != lists.startIndex
        {
            s += "<div class=\"grid2\"><div>\(lists[..<split.lowerBound])</div><div>\(lists[split.lowerBound...])</div></div>\n"
        } else {
            s += matrix + lists
        }
        return s
    }

    /// A table of class pairs, at most `limit` rows: two name columns, then numbers.
    static func pairTable(
        _ title: String, empty: String, headers: [String], pairs: [(row: Int, column: Int, count: Int)], limit: Int,
        cells: ((row: Int, column: Int, count: Int)) -> [String]
    ) -> String {
        var s = "<h3>\(title)</h3>\n"
        guard !pairs.isEmpty else { return s + "<p class=\"note\">\(empty)</p>\n" }
        func row(_ tag: String, _ items: [String]) -> String {
            "<tr>" + items.enumerated().map { "<\(tag)\($0.offset < 2 ? "" : " class=\"num\"")>\($0.element)</\(tag)>" }.joined()
                + "</tr>\n"
        }
        s += "<table>" + row("th", headers.map(HTML.escape))
        for p in pairs.prefix(limit) { s += row("td", cells(p)) }
        s += "</table>\n"
        if pairs.count > limit { s += "<p class=\"note\">\(pairs.count - limit) more pairs not listed.</p>\n" }
        return s
    }

    // MARK: Gallery

    static func gallery(_ result: ValidationResult, _ collector: ReportCollector?, _ c: Context) -> String {
        var s = "<h2>Disagreements</h2>\n"
        guard let collector else { return s + "<p class=\"lede\">Not collected.</p>" }
        let (worst, close) = collector.gallery
        let total = collector.disagreements
        s += "<p class=\"lede\">\(total) of \(collector.samples) samples get a different top-1 class from the model and the reference"
        if total > 0 {
            s +=
                worst.count < total ? "; the \(worst.count) whose class probabilities moved most are shown, worst first." : ", worst first."
        } else {
            s += "."
        }
        s +=
            " “Moved” is the total variation distance between the two softmax distributions (half the summed absolute difference): "
            + "0% for the same probabilities, 100% for no overlap.</p>\n"
        if !worst.isEmpty { s += "<div class=\"gallery\">\n" + worst.map { card($0, c) }.joined() + "</div>\n" }
        if !close.isEmpty {
            s +=
                "<h3>Closest calls</h3>\n<p class=\"lede\">Samples where the two agree on the top-1 class but whose probabilities moved most: "
                + "the next to flip.</p>\n<div class=\"gallery\">\n" + close.map { card($0, c) }.joined() + "</div>\n"
        }
        return s
    }

    static func card(_ sample: ReportSample, _ c: Context) -> String {
        var s = "<div class=\"card\">"
        var file: String?
        if let data = c.data {
            if let files = data.files, sample.index < files.count { file = files[sample.index] }
            if let uri = try? Thumbnail.dataURI(sample: sample.index, of: data) {
                s += "<img src=\"\(uri)\" alt=\"sample \(sample.index)\">"
            }
        }
        s += "<div>"
        var meta = "#\(sample.index)"
        if let file {
            var shown = file
            let root = c.data?.path ?? ""
            if !root.isEmpty, shown.hasPrefix(root) {
                shown = String(shown.dropFirst(root.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            }
            meta += " · <span title=\"\(HTML.escape(file))\">\(HTML.short(shown, 40))</span>"
        }
        if let label = sample.label { meta += " · label <b>\(HTML.escape(name(c, label)))</b>" }
        meta += " · moved \(String(format: "%.1f%%", sample.divergence * 100))"
        s += "<div class=\"meta\">\(meta)</div>"
        if let label = sample.label, let mt = sample.model.first?.id, let rt = sample.reference.first?.id {
            let status: String
            switch (mt == label, rt == label) {
            case (true, true): status = "<span class=\"good\">both right</span>"
            case (false, true): status = "<span class=\"bad\">model wrong, reference right</span>"
            case (true, false): status = "<span class=\"good\">model right, reference wrong</span>"
            case (false, false): status = "<span class=\"bad\">both wrong</span>"
            }
            s += "<div class=\"status\">\(status)</div>"
        }
        // Rank by rank: the model's class and probability beside the reference's.
        func entry(_ e: (id: Int, probability: Double)?, first: Bool, ref: Bool) -> String {
            guard let e else { return "<td></td><td></td>" }
            let hit = e.id == sample.label
            let name = HTML.short(name(c, e.id), 16) + (hit ? " ✓" : "")
            let width = max(1, Int((e.probability * 34).rounded()))
            return "<td class=\"\(first ? "first" : "")\(hit ? " hit" : "")\">\(name)</td>"
                + "<td class=\"num\">\(String(format: "%.1f%%", e.probability * 100))<span class=\"pbar\(ref ? " ref" : "")\" style=\"width:\(width)px\"></span></td>"
        }
        s += "<table class=\"top\"><tr><td class=\"who\" colspan=\"2\">model</td><td class=\"who\" colspan=\"2\">reference</td></tr>"
        for i in 0..<max(sample.model.count, sample.reference.count) {
            s +=
                "<tr>" + entry(i < sample.model.count ? sample.model[i] : nil, first: i == 0, ref: false)
                + entry(i < sample.reference.count ? sample.reference[i] : nil, first: i == 0, ref: true) + "</tr>"
        }
        s += "</table></div></div>\n"
        return s
    }

    // MARK: Speed and size

    static func speed(_ result: ValidationResult, _ c: Context) -> String {
        var s = "<h2>Speed and size</h2>\n"
        let n = max(result.samples, 1)
        let batches = max(1, (result.samples + c.batch - 1) / c.batch)
        s +=
            "<p class=\"lede\">Time spent in each model's predictions while validating: \(result.samples) samples in \(batches) "
            + "batch\(batches == 1 ? "" : "es") of up to \(c.batch), on this machine, in this run. For a like-for-like comparison with "
            + "ONNX Runtime, use the project's Benchmarks.</p>\n"
        s += "<div class=\"grid2\"><div>"
        s += "<table><tr><th></th><th class=\"num\">model</th><th class=\"num\">reference</th></tr>\n"
        s +=
            "<tr><td>runs on</td><td class=\"num\">\(HTML.escape(c.model.runtime))</td><td class=\"num\">\(HTML.escape(c.reference.runtime))</td></tr>\n"
        s +=
            "<tr><td>throughput</td><td class=\"num\">\(HTML.rate(result.modelThroughput))</td><td class=\"num\">\(HTML.rate(result.referenceThroughput))</td></tr>\n"
        s +=
            "<tr><td>latency per batch</td><td class=\"num\">\(HTML.milliseconds(result.modelSeconds / Double(batches)))</td>"
            + "<td class=\"num\">\(HTML.milliseconds(result.referenceSeconds / Double(batches)))</td></tr>\n"
        s +=
            "<tr><td>time per sample</td><td class=\"num\">\(HTML.milliseconds(result.modelSeconds / Double(n)))</td>"
            + "<td class=\"num\">\(HTML.milliseconds(result.referenceSeconds / Double(n)))</td></tr>\n"
        s +=
            "<tr><td>total time</td><td class=\"num\">\(String(format: "%.2f s", result.modelSeconds))</td>"
            + "<td class=\"num\">\(String(format: "%.2f s", result.referenceSeconds))</td></tr>\n"
        s +=
            "<tr><td>file size</td><td class=\"num\">\(HTML.bytes(c.model.bytes))</td><td class=\"num\">\(HTML.bytes(c.reference.bytes))</td></tr>\n"
        s += "</table>\n"
        var ratios: [String] = []
        if c.model.bytes > 0, c.reference.bytes > 0 {
            let r = Double(c.reference.bytes) / Double(c.model.bytes)
            ratios.append(r >= 1 ? String(format: "%.2f× smaller", r) : String(format: "%.2f× larger", 1 / r))
        }
        if result.modelSeconds > 0, result.referenceSeconds > 0 {
            let r = result.referenceSeconds / result.modelSeconds
            ratios.append(r >= 1 ? String(format: "%.1f× faster", r) : String(format: "%.1f× slower", 1 / r))
        }
        if !ratios.isEmpty { s += "<p class=\"note\">The model is \(ratios.joined(separator: " and ")) than the reference here.</p>\n" }
        s += "</div><div>"
        let names = ["model", "reference"]
        let speedRows = zip(names, [result.modelThroughput, result.referenceThroughput]).map { SVGChart.Row(label: $0, values: [$1]) }
        s +=
            "<figure>"
            + SVGChart.bars(
                rows: speedRows, series: [.init(name: "throughput", style: "solid")], format: HTML.rate,
                axisTitle: "images per second (higher is faster)", width: 520, labelWidth: 76) + "</figure>"
        let mib = max(c.model.bytes, c.reference.bytes) >= 1 << 20
        let unit = mib ? 1_048_576.0 : 1024.0, unitName = mib ? "MiB" : "KiB"
        let sizeRows = zip(names, [c.model.bytes, c.reference.bytes]).map { SVGChart.Row(label: $0, values: [Double($1) / unit]) }
        s +=
            "<figure>"
            + SVGChart.bars(
                rows: sizeRows, series: [.init(name: "file size", style: "light")], format: { String(format: "%.2f \(unitName)", $0) },
                axisTitle: "\(unitName) on disk (smaller is better)", width: 520, labelWidth: 76) + "</figure>"
        s += "</div></div>\n"
        return s
    }

    // MARK: - Sensitivity

    /// What `quantize --sensitivity --report` shows.
    public struct Sensitivity {
        /// The model quantized.
        public var model: ModelFacts
        /// Each layer's output SQNR when it alone is int8, worst first.
        public var layers: [(layer: String, sqnrDB: Double)]
        /// Layers kept float32 in the written file.
        public var keptFloat: [String]
        /// Layers int8 does not quantize that have half-precision weights (an int8 file's stem
        /// and head: bfloat16), with the dtype's name.
        public var halfLayers: [(layer: String, dtype: String)] = []
        /// The file written.
        public var output: ModelFacts?
        /// The written model's output SQNR against float32 on the calibration samples.
        public var int8SQNR: Double?
        public var method = ""
        public var calibrationSamples = 0
        /// What the sensitivity was measured on, in words.
        public var measuredOn = "the calibration samples"
        /// The accuracy control of --max-drop: float32 and int8 accuracy (with labels), top-1
        /// agreement with float32, and the drop in points.
        public var accuracy: (floatAccuracy: Double?, int8Accuracy: Double?, agreement: Double, drop: Double)?
        public var maxDrop: Double?
        public var command = ""
        public var date: Date? = Date()

        public init(model: ModelFacts, layers: [(layer: String, sqnrDB: Double)], keptFloat: [String]) {
            (self.model, self.layers, self.keptFloat) = (model, layers, keptFloat)
        }
    }

    public static func sensitivity(_ q: Sensitivity) -> String {
        let kept = Set(q.keptFloat)
        var s =
            "<h2>Summary</h2>\n<p class=\"lede\">Each layer that int8 can take was quantized alone, the rest of the model left float32, "
            + "and the model's output compared with the float32 output on \(HTML.escape(q.measuredOn)): the lower the SQNR, the more "
            + "that layer costs in int8.</p>\n"
        if let a = q.accuracy, let maxDrop = q.maxDrop {
            let ok = a.drop <= maxDrop + 1e-9
            let what =
                a.floatAccuracy != nil
                ? String(format: "accuracy drop %.2f points", a.drop) : String(format: "top-1 disagreement %.2f%%", a.drop)
            s +=
                "<div class=\"verdict \(ok ? "pass" : "fail")\"><span class=\"tag\">\(ok ? "PASS" : "FAIL")</span>\(what) "
                + "\(ok ? "is within" : "exceeds") --max-drop \(String(format: "%g", maxDrop)) with \(q.keptFloat.count) layer\(q.keptFloat.count == 1 ? "" : "s") kept float32</div>\n"
        }
        s += "<div class=\"tiles\">"
        s += tile("Layers measured", "\(q.layers.count)")
        if let worst = q.layers.first { s += tile("Most sensitive", HTML.db(worst.sqnrDB), worst.layer) }
        if let best = q.layers.last { s += tile("Least sensitive", HTML.db(best.sqnrDB), best.layer) }
        s += tile("Kept float32", "\(q.keptFloat.count)", q.keptFloat.joined(separator: ", "))
        if let x = q.int8SQNR { s += tile("int8 output SQNR", HTML.db(x), "whole model, calibration samples") }
        if let a = q.accuracy {
            if let f = a.floatAccuracy, let i = a.int8Accuracy {
                s += tile("int8 accuracy", HTML.percent(i), "float32 \(HTML.percent(f))")
            }
            s += tile("Top-1 agreement", HTML.percent(a.agreement), "with float32")
        }
        s += "</div>\n<table class=\"facts\">\n"
        s +=
            "<tr><td>model</td><td><span class=\"mono\">\(HTML.escape(q.model.path))</span> (\(HTML.escape(q.model.format)), \(HTML.bytes(q.model.bytes)), "
            + "SHA-256 <span class=\"mono\">\(HTML.escape(String((q.model.sha256 ?? "?").prefix(16))))…</span>)</td></tr>\n"
        if let a = q.model.architecture { s += "<tr><td>architecture</td><td>\(HTML.escape(a))</td></tr>\n" }
        if let o = q.output {
            s +=
                "<tr><td>written</td><td><span class=\"mono\">\(HTML.escape(o.path))</span> (\(HTML.bytes(o.bytes)), SHA-256 "
                + "<span class=\"mono\">\(HTML.escape(String((o.sha256 ?? "?").prefix(16))))…</span>): \(HTML.escape(o.precision))</td></tr>\n"
        }
        s += "<tr><td>calibration</td><td>\(HTML.escape(q.method)), \(q.calibrationSamples) samples</td></tr>\n"
        s += "</table>\n"
        var chart =
            "<h2>Sensitivity per layer</h2>\n<p class=\"lede\">Output SQNR against float32 with only that layer int8, most sensitive "
            + "first (higher is better). Layers kept float32 in the written file are shaded and labelled.</p>\n"
        let rows = q.layers.map {
            SVGChart.Row(
                label: $0.layer, note: kept.contains($0.layer) ? "kept float32" : "int8", values: [$0.sqnrDB],
                marked: kept.contains($0.layer))
        }
        if rows.isEmpty {
            chart += "<p class=\"note\">No layer was measured.</p>"
        } else {
            chart +=
                "<figure>"
                + SVGChart.bars(
                    rows: rows, series: [.init(name: "output SQNR with this layer int8", style: "solid")],
                    noteHeader: "in the written file", format: { String(format: "%.1f dB", $0) },
                    axisTitle: "output SQNR (dB) against float32", markedLegend: "kept float32", minimumMax: 10) + "</figure>\n"
        }
        let notMeasured = q.keptFloat.filter { k in !q.layers.contains { $0.layer == k } }
        if !notMeasured.isEmpty {
            chart += "<p class=\"note\">Always float32, not measured: \(notMeasured.map(HTML.escape).joined(separator: ", ")).</p>\n"
        }
        let measured = Set(q.layers.map(\.layer))
        for dtype in Set(q.halfLayers.map(\.dtype)).sorted() {
            let half = q.halfLayers.filter { $0.dtype == dtype && !measured.contains($0.layer) }.map(\.layer)
            if half.isEmpty { continue }
            chart +=
                "<p class=\"note\">Not quantized to int8 (\(HTML.escape(dtype)) weights), not measured: \(half.map(HTML.escape).joined(separator: ", ")).</p>\n"
        }
        let name = base(q.model.path)
        return HTML.page(
            title: "int8 sensitivity: \(name)", heading: "int8 sensitivity: \(HTML.escape(name))",
            subtitle: "\(q.layers.count) layers, calibration \(HTML.escape(q.method))",
            sections: [("summary", "Summary", s), ("sensitivity", "Sensitivity per layer", chart)],
            footer: footer("quantize", q.command, q.date))
    }
}
