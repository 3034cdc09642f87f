import Foundation

/// Pieces of the self-contained HTML pages the reports are: escaping, number formats, the page
/// frame and its style sheet. Nothing here refers to anything outside the page.
enum HTML {
    /// Text made safe for HTML element content and attribute values (double or single quoted).
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            if let entity = entities[c] {
                out += entity
            } else if (c.value < 0x20 && c != "\t" && c != "\n") || (0x7F..<0xA0).contains(c.value) {
                // Control characters other than tab and newline are not allowed in HTML text.
                out += "\u{FFFD}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static let entities: [Unicode.Scalar: String] = ["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"]

    /// `s` cut to `n` characters with an ellipsis, escaped.
    static func short(_ s: String, _ n: Int) -> String {
        escape(s.count > n ? String(s.prefix(n - 1)) + "…" : s)
    }

    // MARK: - Number formats (those of `validate`'s table, so the page says what the table says)

    static func percent(_ v: Double) -> String { String(format: "%.2f%%", v * 100) }
    static func db(_ v: Double) -> String {
        v.isNaN ? "n/a" : v.isInfinite ? (v > 0 ? "inf (identical)" : "-inf") : String(format: "%.1f dB", v)
    }
    static func cosine(_ v: Double) -> String { String(format: "%.6f", v) }
    static func general(_ v: Double) -> String { String(format: "%.3g", v) }
    static func points(_ v: Double) -> String { String(format: "%+.2f", v == 0 ? 0.0 : v) }
    static func rate(_ v: Double) -> String { v >= 100 ? String(format: "%.0f images/s", v) : String(format: "%.1f images/s", v) }
    static func milliseconds(_ seconds: Double) -> String {
        let ms = seconds * 1000
        return ms >= 100 ? String(format: "%.0f ms", ms) : ms >= 1 ? String(format: "%.2f ms", ms) : String(format: "%.3f ms", ms)
    }
    static func bytes(_ n: Int) -> String {
        if n >= 1 << 30 { return String(format: "%.2f GiB", Double(n) / Double(1 << 30)) }
        if n >= 1 << 20 { return String(format: "%.1f MiB", Double(n) / Double(1 << 20)) }
        if n >= 1 << 10 { return String(format: "%.1f KiB", Double(n) / Double(1 << 10)) }
        return "\(n) B"
    }

    /// An SVG number: short, with a dot, no exponent.
    static func n(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(format: "%.1f", r)
    }

    // MARK: - Page

    /// A whole page: `sections` are (anchor id, navigation label, HTML) in order.
    static func page(
        title: String, heading: String, subtitle: String, sections: [(id: String, label: String, html: String)],
        footer: String
    ) -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title>
            <style>
            \(css)
            </style>
            </head>
            <body>
            <svg width="0" height="0" style="position:absolute" aria-hidden="true">\(SVGChart.defs)</svg>
            <header><div class="wrap"><p class="kicker">convnext-convert</p><h1>\(heading)</h1><p class="subtitle">\(subtitle)</p></div></header>
            <nav><div class="wrap">
            """
        out += sections.map { "<a href=\"#\($0.id)\">\(escape($0.label))</a>" }.joined(separator: "\n")
        out += "</div></nav>\n<main class=\"wrap\">\n"
        for s in sections { out += "<section id=\"\(s.id)\">\n\(s.html)\n</section>\n" }
        out += "</main>\n<footer class=\"wrap\">\(footer)</footer>\n</body>\n</html>\n"
        return out
    }

    static let css = """
        :root { --ink: #1c2230; --muted: #5a6375; --line: #d8dce4; --soft: #f4f5f8; --model: #1f5bb8; --ref: #8b95a7;
                --bad: #a8231b; --good: #1c7a3a; --float: #9a5b00; }
        * { box-sizing: border-box; }
        html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif;
               color: var(--ink); background: var(--soft); }
        .wrap { max-width: 1140px; margin: 0 auto; padding: 0 24px; }
        header { background: #1c2230; color: #fff; padding: 18px 0 16px; }
        header h1 { margin: 0; font-size: 22px; font-weight: 650; word-break: break-word; }
        header .kicker { margin: 0 0 2px; font-size: 12px; letter-spacing: .08em; text-transform: uppercase; color: #aab3c5; }
        header .subtitle { margin: 4px 0 0; color: #c9d0dc; }
        nav { background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 2; }
        nav .wrap { display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 8px; padding-bottom: 8px; }
        nav a { color: var(--model); text-decoration: none; font-weight: 600; font-size: 13px; }
        main { padding-top: 8px; padding-bottom: 32px; }
        section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px 20px; margin: 16px 0; }
        h2 { font-size: 18px; margin: 0 0 2px; }
        h3 { font-size: 14px; margin: 18px 0 6px; }
        .lede { color: var(--muted); margin: 0 0 14px; max-width: 80ch; }
        .note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
        .verdict { padding: 10px 14px; border-radius: 6px; border-left: 6px solid var(--ref); background: var(--soft); font-weight: 600; margin: 4px 0 14px; }
        .verdict.pass { border-color: var(--good); background: #e9f5ed; }
        .verdict.fail { border-color: var(--bad); background: #fbeceb; }
        .verdict .tag { display: inline-block; font-size: 12px; letter-spacing: .06em; padding: 1px 7px; border-radius: 4px; margin-right: 8px;
                        color: #fff; background: var(--ref); }
        .verdict.pass .tag { background: var(--good); }
        .verdict.fail .tag { background: var(--bad); }
        .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 10px; margin-bottom: 16px; }
        .tile { border: 1px solid var(--line); border-radius: 6px; padding: 9px 12px; }
        .tile .k { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .05em; }
        .tile .v { font-size: 21px; font-weight: 650; font-variant-numeric: tabular-nums; white-space: nowrap; }
        .tile .s { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { font-size: 12px; color: var(--muted); font-weight: 600; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; padding-left: 10px; }
        table.facts td:first-child { color: var(--muted); width: 12em; }
        table.facts.two { table-layout: fixed; }
        .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; word-break: break-all; }
        .bad { color: var(--bad); font-weight: 600; }
        .good { color: var(--good); font-weight: 600; }
        .grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 20px; align-items: start; }
        figure { margin: 0; }
        figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
        svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
        svg text { font-size: 11px; }
        svg text:not([fill]) { fill: var(--ink); }
        svg .muted { fill: var(--muted); }
        svg .grid { stroke: #e3e6ec; stroke-width: 1; }
        svg .axis { stroke: #9aa2b1; stroke-width: 1; }
        .gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(350px, 1fr)); gap: 10px; }
        .card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; display: flex; gap: 10px; break-inside: avoid; }
        .card img { width: 84px; height: 84px; object-fit: contain; image-rendering: pixelated; background: #eceef2; border-radius: 3px; flex: none; }
        .card > div { min-width: 0; flex: 1; }
        .card .meta { font-size: 11.5px; color: var(--muted); overflow-wrap: anywhere; }
        .card .status { font-size: 12px; font-weight: 600; margin: 1px 0 2px; }
        .card table.top td { border: 0; padding: 0 4px 0 0; font-size: 12px; white-space: nowrap; }
        .card table.top td.num { padding: 0 10px 0 0; text-align: left; }
        .card .who { font-size: 10.5px; font-weight: 700; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
        .card .first { font-weight: 650; }
        .pbar { display: inline-block; height: 7px; background: var(--model); vertical-align: middle; border-radius: 1px; margin-left: 4px; }
        .pbar.ref { background: var(--ref); }
        .hit { font-weight: 700; }
        details summary { cursor: pointer; color: var(--model); font-weight: 600; margin-top: 12px; }
        footer { color: var(--muted); font-size: 12px; padding-bottom: 28px; }
        @media (max-width: 760px) { .grid2 { grid-template-columns: 1fr; } }
        @media print {
          body { background: #fff; font-size: 11px; }
          .mono, figcaption, .note, .lede { font-size: 10.5px; }
          .wrap { max-width: none; padding: 0; }
          header { background: none; color: #000; border-bottom: 2px solid #000; padding: 0 0 6px; }
          header .kicker, header .subtitle { color: #333; }
          nav { display: none; }
          section { border: 0; border-top: 1px solid #999; border-radius: 0; padding: 10px 0; margin: 10px 0; }
          .card, tr, figure, .tiles { break-inside: avoid; }
          h2, h3 { break-after: avoid; }
          a { color: inherit; text-decoration: none; }
        }
        """
}
