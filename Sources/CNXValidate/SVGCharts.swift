import Foundation

/// Inline SVG charts for the HTML reports. Every mark carries its value as text, and series differ
/// by pattern and shape as well as colour, so the charts read in greyscale and on paper.
enum SVGChart {
    /// A series of a bar chart: its legend text and how its bars are filled.
    struct Series {
        var name: String
        /// "solid" (dark), "light" (grey) or "hatch" (diagonal lines).
        var style: String
    }

    /// One row of a horizontal bar chart.
    struct Row {
        var label: String
        /// Second column (a layer's precision, say); may be empty.
        var note: String = ""
        /// One value per series; nil: not measured; +infinity: drawn full length as "identical".
        var values: [Double?]
        /// Marked rows get a tinted band and their note in bold.
        var marked = false
    }

    static let width = 1060.0

    /// Patterns the charts share, defined once per page (`HTML.page`).
    static var defs: String {
        """
        <defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">\
        <rect width="6" height="6" fill="#dfe6f3"/><line x1="0" y1="0" x2="0" y2="6" stroke="#1f5bb8" stroke-width="2.2"/></pattern></defs>
        """
    }

    static func fill(_ style: String) -> String {
        switch style {
        case "light": return "fill=\"#8b95a7\""
        case "hatch": return "fill=\"url(#hatch)\" stroke=\"#1f5bb8\" stroke-width=\"0.8\""
        default: return "fill=\"#1f5bb8\""
        }
    }

    /// A horizontal bar chart: a label and a note column, then each row's bars (one per series)
    /// from 0 to the axis maximum, each followed by its value as text.
    static func bars(
        rows: [Row], series: [Series], noteHeader: String = "", format: (Double) -> String,
        axisTitle: String, markedLegend: String? = nil, minimumMax: Double = 0,
        width: Double = SVGChart.width, labelWidth: Double = 190
    ) -> String {
        let labelW = labelWidth, noteW = noteHeader.isEmpty ? 0.0 : 150.0
        // Room on the right for the longest value written after its bar (bold, about 6.8 px a character).
        let longest = rows.flatMap { $0.values.compactMap { $0.map { $0.isInfinite ? "identical" : format($0) } } }.map(\.count).max() ?? 0
        let x0 = labelW + noteW + 8, x1 = width - max(60, Double(longest) * 6.8 + 12)
        let barH = series.count > 1 ? 10.0 : 13.0, gap = 2.0
        let rowH = Double(series.count) * (barH + gap) + 8
        let top = 44.0, bottom = 30.0
        let height = top + rowH * Double(rows.count) + bottom
        let finite = rows.flatMap { $0.values.compactMap { $0 } }.filter(\.isFinite)
        let maxValue = max(finite.max() ?? 0, minimumMax)
        let step = niceStep(maxValue / 6)
        let axisMax = max(step, (maxValue / step).rounded(.up) * step)
        func x(_ v: Double) -> Double { x0 + (x1 - x0) * max(0, min(v, axisMax)) / axisMax }
        var s =
            "<svg viewBox=\"0 0 \(n(width)) \(n(height))\" width=\"\(n(width))\" height=\"\(n(height))\" role=\"img\" aria-label=\"\(HTML.escape(axisTitle))\">\n"
        // Legend.
        var lx = x0
        for se in series {
            s += "<rect x=\"\(n(lx))\" y=\"6\" width=\"18\" height=\"11\" \(fill(se.style))/>"
            s += "<text x=\"\(n(lx + 24))\" y=\"15\">\(HTML.escape(se.name))</text>\n"
            lx += 34 + Double(se.name.count) * 6.4
        }
        if let markedLegend {
            s += "<rect x=\"\(n(lx))\" y=\"5\" width=\"18\" height=\"13\" fill=\"#fbe9cf\" stroke=\"#9a5b00\" stroke-width=\"1\"/>"
            s += "<text x=\"\(n(lx + 24))\" y=\"15\">\(HTML.escape(markedLegend))</text>\n"
        }
        if !noteHeader.isEmpty {
            s += "<text x=\"\(n(labelW))\" y=\"\(n(top - 8))\" class=\"muted\" font-weight=\"600\">\(HTML.escape(noteHeader))</text>\n"
        }
        // Grid and axis labels.
        var v = 0.0
        while v <= axisMax + step / 2 {
            let gx = x(v)
            s += "<line class=\"grid\" x1=\"\(n(gx))\" y1=\"\(n(top - 4))\" x2=\"\(n(gx))\" y2=\"\(n(height - bottom + 2))\"/>"
            s +=
                "<text x=\"\(n(gx))\" y=\"\(n(height - bottom + 15))\" text-anchor=\"middle\" class=\"muted\">\(HTML.escape(axisLabel(v)))</text>\n"
            v += step
        }
        s +=
            "<text x=\"\(n((x0 + x1) / 2))\" y=\"\(n(height - 3))\" text-anchor=\"middle\" class=\"muted\">\(HTML.escape(axisTitle))</text>\n"
        for (i, row) in rows.enumerated() {
            let y = top + rowH * Double(i)
            if row.marked {
                s += "<rect x=\"0\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(rowH - 2))\" fill=\"#fbe9cf\"/>"
            } else if i % 2 == 1 {
                s += "<rect x=\"0\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(rowH - 2))\" fill=\"#f7f8fa\"/>"
            }
            let mid = y + (rowH - 2) / 2 + 4
            s += "<text x=\"4\" y=\"\(n(mid))\">\(HTML.short(row.label, 30))<title>\(HTML.escape(row.label))</title></text>"
            if !noteHeader.isEmpty {
                s +=
                    "<text x=\"\(n(labelW))\" y=\"\(n(mid))\"\(row.marked ? " font-weight=\"700\" fill=\"#7a4700\"" : " class=\"muted\"")>\(HTML.short(row.note, 24))</text>"
            }
            for (k, se) in series.enumerated() {
                let by = y + 4 + Double(k) * (barH + gap)
                guard k < row.values.count, let value = row.values[k] else {
                    s += "<text x=\"\(n(x0 + 4))\" y=\"\(n(by + barH - 1))\" class=\"muted\">not measured</text>"
                    continue
                }
                let end = value.isInfinite && value > 0 ? x1 : x(value)
                if end > x0 {
                    s += "<rect x=\"\(n(x0))\" y=\"\(n(by))\" width=\"\(n(end - x0))\" height=\"\(n(barH))\" \(fill(se.style))/>"
                }
                let text = value.isInfinite && value > 0 ? "identical" : format(value)
                s +=
                    "<text x=\"\(n(end + 5))\" y=\"\(n(by + barH - 1))\"\(k == 0 ? " font-weight=\"600\"" : "")>\(HTML.escape(text))</text>"
            }
            s += "\n"
        }
        s += "<line class=\"axis\" x1=\"\(n(x0))\" y1=\"\(n(top - 4))\" x2=\"\(n(x0))\" y2=\"\(n(height - bottom + 2))\"/>\n"
        return s + "</svg>"
    }

    /// A step of 1, 2 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw { return m * p }
        return 10 * p
    }

    static func axisLabel(_ v: Double) -> String {
        if v >= 1e6 { return String(format: "%gM", v / 1e6) }
        if v >= 1e4 { return String(format: "%gk", v / 1e3) }
        return String(format: "%g", v)
    }

    /// One row of a dumbbell chart: two values (0...1) of the same thing, before and after.
    struct Pair {
        var label: String
        var detail: String
        var reference: Double
        var model: Double
        var change: String
        var worse: Bool
        var better: Bool
    }

    /// A dumbbell chart of accuracies: per row a hollow circle (reference), a filled diamond
    /// (model) and a line between them, on a percent axis zoomed to the values shown.
    static func dumbbell(_ rows: [Pair], referenceName: String, modelName: String) -> String {
        let labelW = 210.0, detailW = 90.0
        let x0 = labelW + detailW + 12, x1 = width - 100
        let rowH = 19.0, top = 40.0, bottom = 30.0
        let height = top + rowH * Double(rows.count) + bottom
        let low = rows.map { min($0.reference, $0.model) }.min() ?? 0
        let lower = max(0, floor((low * 100 - 1) / 10) * 10)
        func x(_ v: Double) -> Double { x0 + (x1 - x0) * (v * 100 - lower) / (100 - lower) }
        var s =
            "<svg viewBox=\"0 0 \(n(width)) \(n(height))\" width=\"\(n(width))\" height=\"\(n(height))\" role=\"img\" aria-label=\"accuracy per class\">\n"
        s += "<circle cx=\"\(n(x0 + 6))\" cy=\"11\" r=\"5\" fill=\"#fff\" stroke=\"#5a6375\" stroke-width=\"2\"/>"
        s += "<text x=\"\(n(x0 + 16))\" y=\"15\">\(HTML.escape(referenceName))</text>"
        let mx = x0 + 40 + Double(referenceName.count) * 6.4
        s += "<path d=\"M\(n(mx)) 5 l6 6 l-6 6 l-6 -6 z\" fill=\"#1f5bb8\"/>"
        s += "<text x=\"\(n(mx + 12))\" y=\"15\">\(HTML.escape(modelName))</text>"
        s += "<text x=\"4\" y=\"\(n(top - 8))\" class=\"muted\" font-weight=\"600\">class</text>"
        s += "<text x=\"\(n(labelW))\" y=\"\(n(top - 8))\" class=\"muted\" font-weight=\"600\">samples</text>"
        s +=
            "<text x=\"\(n(width - 4))\" y=\"\(n(top - 8))\" text-anchor=\"end\" class=\"muted\" font-weight=\"600\">change (points)</text>\n"
        let step = (100 - lower) > 50 ? 10.0 : (100 - lower) > 20 ? 5.0 : (100 - lower) > 8 ? 2.0 : 1.0
        var v = lower
        while v <= 100.0001 {
            let gx = x(v / 100)
            s += "<line class=\"grid\" x1=\"\(n(gx))\" y1=\"\(n(top - 4))\" x2=\"\(n(gx))\" y2=\"\(n(height - bottom + 2))\"/>"
            s +=
                "<text x=\"\(n(gx))\" y=\"\(n(height - bottom + 15))\" text-anchor=\"middle\" class=\"muted\">\(String(format: "%g%%", v))</text>\n"
            v += step
        }
        s +=
            "<text x=\"\(n((x0 + x1) / 2))\" y=\"\(n(height - 3))\" text-anchor=\"middle\" class=\"muted\">top-1 accuracy of the class</text>\n"
        for (i, r) in rows.enumerated() {
            let y = top + rowH * Double(i)
            if i % 2 == 1 { s += "<rect x=\"0\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(rowH))\" fill=\"#f7f8fa\"/>" }
            let cy = y + rowH / 2, ty = cy + 4
            s += "<text x=\"4\" y=\"\(n(ty))\">\(HTML.short(r.label, 32))<title>\(HTML.escape(r.label))</title></text>"
            s += "<text x=\"\(n(labelW))\" y=\"\(n(ty))\" class=\"muted\">\(HTML.escape(r.detail))</text>"
            let a = x(r.reference), b = x(r.model)
            if abs(a - b) > 0.5 {
                s += "<line x1=\"\(n(a))\" y1=\"\(n(cy))\" x2=\"\(n(b))\" y2=\"\(n(cy))\" stroke=\"#5a6375\" stroke-width=\"2\"/>"
            }
            s += "<circle cx=\"\(n(a))\" cy=\"\(n(cy))\" r=\"5\" fill=\"#fff\" stroke=\"#5a6375\" stroke-width=\"2\"/>"
            s += "<path d=\"M\(n(b)) \(n(cy - 5)) l5 5 l-5 5 l-5 -5 z\" fill=\"#1f5bb8\"/>"
            let cls =
                r.worse ? " fill=\"#a8231b\" font-weight=\"700\"" : r.better ? " fill=\"#1c7a3a\" font-weight=\"700\"" : " class=\"muted\""
            s += "<text x=\"\(n(width - 4))\" y=\"\(n(ty))\" text-anchor=\"end\"\(cls)>\(HTML.escape(r.change))</text>\n"
        }
        return s + "</svg>"
    }

    /// A heat map of counts: `counts[row * size + column]`, shaded by the share of the row;
    /// counts written in the cells when they are big enough. `changed` cells get a heavy outline
    /// and their change in the corner.
    static func heatmap(size: Int, names: [String], counts: [Int: Int], change: [Int: Int], rowTitle: String, columnTitle: String) -> String
    {
        let cell = max(6.0, min(40.0, 640.0 / Double(size)))
        let showNames = size <= 40
        let labelW = showNames ? min(150.0, 16 + 7 * Double(names.map(\.count).max() ?? 1)) : 40.0
        let x0 = labelW + 26, y0 = labelW + 26
        let side = cell * Double(size)
        let w = x0 + side + 20, h = y0 + side + 12
        var rowTotals = [Int](repeating: 0, count: size)
        for (key, c) in counts { rowTotals[key / size] += c }
        var s = "<svg viewBox=\"0 0 \(n(w)) \(n(h))\" width=\"\(n(w))\" height=\"\(n(h))\" role=\"img\" aria-label=\"confusion matrix\">\n"
        s += "<text x=\"\(n(x0 + side / 2))\" y=\"12\" text-anchor=\"middle\" font-weight=\"600\">\(HTML.escape(columnTitle))</text>"
        s +=
            "<text transform=\"translate(12 \(n(y0 + side / 2))) rotate(-90)\" text-anchor=\"middle\" font-weight=\"600\">\(HTML.escape(rowTitle))</text>\n"
        let every = showNames ? 1 : max(1, Int((14 / cell).rounded(.up)))
        for i in stride(from: 0, to: size, by: every) {
            let name = showNames ? HTML.short(names[i], 18) : String(i)
            let c = Double(i) * cell + cell / 2
            s += "<text x=\"\(n(x0 - 4))\" y=\"\(n(y0 + c + 4))\" text-anchor=\"end\">\(name)</text>"
            s += "<text transform=\"translate(\(n(x0 + c + 4)) \(n(y0 - 4))) rotate(-60)\">\(name)</text>\n"
        }
        let textSize = max(7.0, min(12.0, cell * 0.36))
        for r in 0..<size {
            for c in 0..<size {
                let key = r * size + c
                let count = counts[key] ?? 0
                let share = rowTotals[r] > 0 ? Double(count) / Double(rowTotals[r]) : 0
                let x = x0 + Double(c) * cell, y = y0 + Double(r) * cell
                let shade = count == 0 ? "#ffffff" : shadeColour(share)
                s +=
                    "<rect x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(cell))\" height=\"\(n(cell))\" fill=\"\(shade)\" stroke=\"#e3e6ec\" stroke-width=\"0.5\">"
                s +=
                    "<title>\(HTML.escape(names[r])) → \(HTML.escape(names[c])): \(count)\(change[key].map { " (\(signed($0)) against the reference)" } ?? "")</title></rect>"
                let ink = share > 0.45 ? "#ffffff" : "#1c2230"
                let d = change[key] ?? 0
                if d != 0 {
                    s +=
                        "<rect x=\"\(n(x + 1))\" y=\"\(n(y + 1))\" width=\"\(n(cell - 2))\" height=\"\(n(cell - 2))\" fill=\"none\" stroke=\"#a8231b\" stroke-width=\"2\" stroke-dasharray=\"3 2\"/>"
                }
                if cell >= 28 && d != 0 {
                    // The count above, the change against the reference below, in the cell's ink.
                    if count > 0 {
                        s +=
                            "<text x=\"\(n(x + cell / 2))\" y=\"\(n(y + cell * 0.45))\" text-anchor=\"middle\" font-size=\"\(n(textSize))\" fill=\"\(ink)\">\(count)</text>"
                    }
                    s +=
                        "<text x=\"\(n(x + cell / 2))\" y=\"\(n(y + cell * 0.82))\" text-anchor=\"middle\" font-size=\"\(n(textSize * 0.85))\" font-weight=\"700\" fill=\"\(count > 0 ? ink : "#a8231b")\">(\(signed(d)))</text>"
                } else if count > 0 && cell >= 16 {
                    s +=
                        "<text x=\"\(n(x + cell / 2))\" y=\"\(n(y + cell / 2 + textSize * 0.36))\" text-anchor=\"middle\" font-size=\"\(n(textSize))\" fill=\"\(ink)\">\(count)</text>"
                }
            }
            s += "\n"
        }
        s += "<rect x=\"\(n(x0))\" y=\"\(n(y0))\" width=\"\(n(side))\" height=\"\(n(side))\" fill=\"none\" stroke=\"#9aa2b1\"/>\n"
        return s + "</svg>"
    }

    /// White through blue to dark blue as `share` goes from 0 to 1 (also a lightness ramp, for greyscale).
    static func shadeColour(_ share: Double) -> String {
        let t = pow(max(0, min(1, share)), 0.6)
        let from = (238.0, 243.0, 252.0), to = (17.0, 52.0, 120.0)
        let r = Int(from.0 + (to.0 - from.0) * t), g = Int(from.1 + (to.1 - from.1) * t), b = Int(from.2 + (to.2 - from.2) * t)
        return String(format: "#%02x%02x%02x", r, g, b)
    }

    static func signed(_ v: Int) -> String { v > 0 ? "+\(v)" : "\(v)" }

    static func n(_ v: Double) -> String { HTML.n(v) }
}
