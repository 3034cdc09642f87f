import Foundation

extension ValidationResult {
    /// The order preprocessing settings are reported in.
    static let preprocessingSettings = ["size", "crop_pct", "interpolation", "mean", "std"]

    /// `size from m.cnx metadata; mean, std from ImageNet's defaults`.
    var preprocessingOrigin: String? {
        guard let sources = preprocessingSources else { return nil }
        var groups: [(source: String, settings: [String])] = []
        for setting in Self.preprocessingSettings {
            guard let source = sources[setting] else { continue }
            if let i = groups.firstIndex(where: { $0.source == source }) {
                groups[i].settings.append(setting)
            } else {
                groups.append((source, [setting]))
            }
        }
        return groups.map { "\($0.settings.joined(separator: ", ")) from \($0.source)" }.joined(separator: "; ")
    }

    /// The `preprocessing` entry of the JSON report: the transform applied to images and where
    /// each setting came from, or that the data was a preprocessed `.npy` batch.
    var preprocessingJSON: JSON {
        guard let p = preprocessing else {
            return .object([("applied", .bool(false)), ("note", .string("the data is a preprocessed .npy batch"))])
        }
        func decimal(_ v: Float) -> JSON { .number(Double(String(v)) ?? Double(v)) }
        var o: [(String, JSON)] = [
            ("applied", .bool(true)), ("height", .int(p.height)), ("width", .int(p.width)), ("crop_pct", .number(p.cropPct)),
            ("interpolation", .string(p.interpolation.rawValue)), ("mean", .array(p.mean.map(decimal))),
            ("std", .array(p.std.map(decimal))),
        ]
        if let sources = preprocessingSources {
            o.append(("source", .object(Self.preprocessingSettings.compactMap { k in sources[k].map { (k, .string($0)) } })))
        }
        return .object(o)
    }

    /// The name of class `id`: the folder name for an image folder, else the number.
    func className(_ id: Int) -> String {
        if let names = classNames, id < names.count { return names[id] }
        return String(id)
    }

    /// One JSON object. Always: `samples`, `classes`, `top1_agreement`, `top5_overlap`,
    /// `mean_cosine`, `sqnr_db` (null when the logits are identical), `max_abs_diff`, `model`,
    /// `reference`; with labels: `top1_accuracy`, `reference_top1_accuracy`, `top5_accuracy`,
    /// `reference_top5_accuracy` (fractions), `correct`, `reference_correct`,
    /// `accuracy_drop_points`; `per_class`, `per_layer` and `max_drop`/`within_budget` when asked for.
    ///
    /// For models with several outputs: `samples`, `data`, `outputs` (keyed by output name, each
    /// with `shape` (one sample's), `mean_cosine`, `sqnr_db`, `max_abs_diff`), `mean_cosine`,
    /// `sqnr_db` and `max_abs_diff` (the worst over the outputs), `model`, `reference`, `note`
    /// (classification metrics skipped) and `per_layer` when asked for; no `classes`, no
    /// classification metrics, no budget.
    public func json(perClass: Bool = false, maxDrop: Double? = nil) -> String {
        if let outputs { return multiOutputJSON(outputs) }
        let m = metrics
        var o: [(String, JSON)] = [
            ("samples", .int(samples)),
            ("classes", .int(m.classes)),
            ("data", .string(dataPath)),
            ("preprocessing", preprocessingJSON),
        ]
        if m.hasLabels {
            o += [
                ("top1_accuracy", .number(m.modelTop1Accuracy)),
                ("reference_top1_accuracy", .number(m.referenceTop1Accuracy)),
                ("top5_accuracy", m.classes >= 5 ? .number(m.modelTop5Accuracy) : .null),
                ("reference_top5_accuracy", m.classes >= 5 ? .number(m.referenceTop5Accuracy) : .null),
                ("correct", .int(m.modelTop1)),
                ("reference_correct", .int(m.referenceTop1)),
                ("accuracy_drop_points", .number(m.accuracyDropPoints)),
            ]
        }
        o += [
            ("top1_agreement", .number(m.top1Agreement)),
            ("top5_overlap", .number(m.top5Overlap)),
            ("mean_cosine", .number(m.meanCosine)),
            ("sqnr_db", .number(m.sqnrDB)),
            ("max_abs_diff", .number(Double(m.maxAbsDiff))),
        ]
        o += modelsJSON
        if perClass && m.hasLabels {
            o.append(
                (
                    "per_class",
                    .array(
                        m.classAccuracies.map { c in
                            .object([
                                ("class", .int(c.id)), ("name", .string(className(c.id))), ("samples", .int(c.samples)),
                                ("top1_accuracy", .number(c.model)), ("reference_top1_accuracy", .number(c.reference)),
                                ("change_points", .number(c.changePoints)),
                            ])
                        })
                ))
        }
        if let layers = perLayerJSON { o.append(("per_layer", layers)) }
        if let maxDrop {
            o += [("max_drop", .number(maxDrop)), ("within_budget", .bool(withinBudget(maxDrop: maxDrop)))]
        }
        return JSON.object(o).text
    }

    /// The table for people.
    public func table(perClass: Bool = false, maxDrop: Double? = nil) -> String {
        if let outputs { return multiOutputTable(outputs) }
        let m = metrics
        var lines: [String] = []
        func percent(_ v: Double) -> String { String(format: "%.2f%%", v * 100) }
        func rate(_ v: Double) -> String { v >= 100 ? String(format: "%.0f images/s", v) : String(format: "%.1f images/s", v) }
        func db(_ v: Double) -> String { v.isInfinite ? "inf (identical logits)" : String(format: "%.1f dB", v) }
        lines.append("model:      \(modelPath) (\(modelRuntime))")
        lines.append("reference:  \(referencePath) (\(referenceRuntime))")
        var data =
            "data:       \(dataPath): \(samples) samples of \(sampleShape.map(String.init).joined(separator: "x")), \(m.classes) classes"
        if let labelSource { data += ", labels from \(labelSource)" }
        lines.append(data)
        if let p = preprocessing { lines.append("transform:  \(p.summary)" + (preprocessingOrigin.map { " (\($0))" } ?? "")) }
        lines.append("")
        let w0 = 18, w1 = 16
        func row(_ a: String, _ b: String, _ c: String) -> String {
            a.padding(toLength: w0, withPad: " ", startingAt: 0) + b.padding(toLength: w1, withPad: " ", startingAt: 0) + c
        }
        lines.append(row("", "model", "reference"))
        if m.hasLabels {
            lines.append(row("top-1 accuracy", "\(percent(m.modelTop1Accuracy))", "\(percent(m.referenceTop1Accuracy))"))
            lines.append(row("  correct", "\(m.modelTop1) / \(m.labelled)", "\(m.referenceTop1) / \(m.labelled)"))
            if m.classes >= 5 {
                lines.append(row("top-5 accuracy", percent(m.modelTop5Accuracy), percent(m.referenceTop5Accuracy)))
            }
        }
        lines.append(row("throughput", rate(modelThroughput), rate(referenceThroughput)))
        lines.append("")
        lines.append(
            "agreement:  top-1 \(percent(m.top1Agreement)) (\(m.top1Agreements) / \(samples)), top-\(m.k) overlap \(percent(m.top5Overlap))"
        )
        lines.append(
            String(
                format: "logits:     mean cosine %.6f, SQNR %@, largest |difference| %.3g", m.meanCosine, db(m.sqnrDB), Double(m.maxAbsDiff)
            ))
        if m.hasLabels {
            lines.append(
                String(format: "change:     %+.2f points of top-1 accuracy", m.accuracyDropPoints == 0 ? 0.0 : -m.accuracyDropPoints))
        }
        if perClass && m.hasLabels {
            lines.append("")
            let changed = m.classAccuracies.filter { $0.model != $0.reference }
            lines.append("per class (top-1 accuracy, model vs reference, \(changed.count) of \(m.classAccuracies.count) classes changed):")
            // Classes that changed first, worst first; then the rest by id, unless there are many.
            let ordered =
                changed.sorted { $0.changePoints != $1.changePoints ? $0.changePoints < $1.changePoints : $0.id < $1.id }
                + (m.classAccuracies.count <= 50 ? m.classAccuracies.filter { $0.model == $0.reference } : [])
            for c in ordered {
                let name = "\(className(c.id))".padding(toLength: max(12, min(32, className(c.id).count)), withPad: " ", startingAt: 0)
                lines.append(
                    String(
                        format: "  %@ %4d samples  %7.2f%%  %7.2f%%  %+7.2f", name, c.samples, c.model * 100, c.reference * 100,
                        c.changePoints))
            }
        }
        lines += perLayerLines
        if let maxDrop {
            lines.append("")
            lines.append("budget:     \(budgetVerdict(maxDrop: maxDrop))")
        }
        return lines.joined(separator: "\n")
    }

    /// `model` and `reference` of the JSON report.
    private var modelsJSON: [(String, JSON)] {
        [
            (
                "model",
                .object([
                    ("path", .string(modelPath)), ("runtime", .string(modelRuntime)),
                    ("seconds", .number(modelSeconds)), ("images_per_second", .number(modelThroughput)),
                ])
            ),
            (
                "reference",
                .object([
                    ("path", .string(referencePath)), ("runtime", .string(referenceRuntime)),
                    ("seconds", .number(referenceSeconds)), ("images_per_second", .number(referenceThroughput)),
                ])
            ),
        ]
    }

    private var perLayerJSON: JSON? {
        perLayer.map { layers in
            .array(
                layers.map { l in
                    .object([
                        ("layer", .string(l.name)), ("shape", .array(l.shape.map { .int($0) })), ("sqnr_db", .number(l.sqnrDB)),
                        ("local_sqnr_db", l.localSQNRDB.map { .number($0) } ?? .null),
                        ("max_abs_diff", .number(Double(l.maxAbsDiff))), ("cosine", .number(l.cosine)),
                    ])
                })
        }
    }

    private var perLayerLines: [String] {
        guard let layers = perLayer else { return [] }
        var lines = ["", "per layer (SQNR of the model's output against the reference's; alone: the layer given the reference's input):"]
        lines.append(
            "  " + "layer".padding(toLength: 20, withPad: " ", startingAt: 0) + "shape".padding(toLength: 20, withPad: " ", startingAt: 0)
                + "SQNR".padding(toLength: 12, withPad: " ", startingAt: 0) + "alone".padding(toLength: 12, withPad: " ", startingAt: 0)
                + "max |diff|")
        for l in layers {
            func d(_ v: Double?) -> String { v.map { $0.isInfinite ? "inf" : String(format: "%.1f dB", $0) } ?? "-" }
            lines.append(
                "  " + l.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                    + "\(l.shape)".padding(toLength: 20, withPad: " ", startingAt: 0)
                    + d(l.sqnrDB).padding(toLength: 12, withPad: " ", startingAt: 0)
                    + d(l.localSQNRDB).padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: "%.3g", Double(l.maxAbsDiff)))
        }
        return lines
    }

    /// Why a multi-output report has no accuracy, agreement or budget.
    var multiOutputNote: String {
        var note =
            "classification metrics (accuracy, top-1 agreement, top-5 overlap) and --max-drop are for single-output models; "
            + "skipped for \(outputs?.count ?? 0) outputs"
        if let labelSource { note += "; labels from \(labelSource) not used" }
        return note
    }

    private func multiOutputJSON(_ outputs: [OutputMetrics]) -> String {
        var o: [(String, JSON)] = [
            ("samples", .int(samples)),
            ("data", .string(dataPath)),
            ("preprocessing", preprocessingJSON),
            (
                "outputs",
                .object(
                    outputs.map { out in
                        (
                            out.name,
                            .object([
                                ("shape", .array(out.shape.map { .int($0) })), ("mean_cosine", .number(out.meanCosine)),
                                ("sqnr_db", .number(out.sqnrDB)), ("max_abs_diff", .number(Double(out.maxAbsDiff))),
                            ])
                        )
                    })
            ),
            ("mean_cosine", .number(worstMeanCosine)),
            ("sqnr_db", .number(worstSQNRDB)),
            ("max_abs_diff", .number(largestAbsDiff)),
        ]
        o += modelsJSON
        o.append(("note", .string(multiOutputNote)))
        if let layers = perLayerJSON { o.append(("per_layer", layers)) }
        return JSON.object(o).text
    }

    private func multiOutputTable(_ outputs: [OutputMetrics]) -> String {
        var lines: [String] = []
        func rate(_ v: Double) -> String { v >= 100 ? String(format: "%.0f images/s", v) : String(format: "%.1f images/s", v) }
        func db(_ v: Double) -> String { v.isInfinite ? "inf (identical)" : String(format: "%.1f dB", v) }
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s.padding(toLength: w, withPad: " ", startingAt: 0) }
        lines.append("model:      \(modelPath) (\(modelRuntime))")
        lines.append("reference:  \(referencePath) (\(referenceRuntime))")
        lines.append(
            "data:       \(dataPath): \(samples) samples of \(sampleShape.map(String.init).joined(separator: "x")), "
                + "\(outputs.count) outputs compared by name")
        if let p = preprocessing { lines.append("transform:  \(p.summary)" + (preprocessingOrigin.map { " (\($0))" } ?? "")) }
        lines.append("")
        lines.append(pad("", 18) + pad("model", 16) + "reference")
        lines.append(pad("throughput", 18) + pad(rate(modelThroughput), 16) + rate(referenceThroughput))
        lines.append("")
        let w0 = max(18, (outputs.map(\.name.count).max() ?? 0) + 2)
        lines.append(pad("output", w0) + pad("shape", 16) + pad("mean cosine", 14) + pad("SQNR", 18) + "largest |difference|")
        for out in outputs {
            lines.append(
                pad(out.name, w0) + pad(out.shape.map(String.init).joined(separator: "x"), 16)
                    + pad(String(format: "%.6f", out.meanCosine), 14) + pad(db(out.sqnrDB), 18)
                    + String(format: "%.3g", Double(out.maxAbsDiff)))
        }
        lines.append("")
        lines.append(
            String(
                format: "worst:      mean cosine %.6f, SQNR %@, largest |difference| %.3g", worstMeanCosine, db(worstSQNRDB), largestAbsDiff
            ))
        lines.append("note:       \(multiOutputNote)")
        lines += perLayerLines
        return lines.joined(separator: "\n")
    }
}
