import CNXConvert
import CNXFormat
import CNXGraph
import CNXQuantize
import Foundation

/// Text that `inspect` prints.
enum Report {
    static func inspect(_ loaded: LoadedModel, path: String) -> String {
        let graph = loaded.graph
        var lines: [String] = []
        let m = graph.metadata
        lines.append("file:       \(path)")
        if loaded.format == "cnx" {
            lines.append("format:     cnx")
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            lines.append("size:       \(bytes(size))")
            lines.append("metadata:")
            for (k, v) in loaded.metadata.sorted(by: { $0.key < $1.key }) { lines.append("  \(k) = \(show(v))") }
            let p = graph.parameterCount
            lines.append("parameters: \(grouped(p.elements)) (\(bytes(p.bytes)))")
            lines.append("inputs:")
            for v in graph.inputs { lines.append("  \(v.name): \(v.dtype.name) \(v.shape.map(describe) ?? "[?]")") }
            lines.append("outputs:")
            for v in graph.outputs { lines.append("  \(v.name): \(v.dtype.name) \(v.shape.map(describe) ?? "[?]")") }
            lines.append("operators (\(graph.nodes.count) nodes):")
            for (op, count) in graph.opHistogram { lines.append("  \(op.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) \(count)") }
            let names = Int8Lowering.layerNames(graph)
            let quantized = names.keys.sorted().filter { graph.nodes[$0.node].attributes["a\($0.layer)_scale"] != nil }
            if !quantized.isEmpty {
                lines.append("pointwise layers (\(names.count), \(quantized.count) int8):")
                for key in names.keys.sorted() {
                    let node = graph.nodes[key.node]
                    guard let scale = node.float("a\(key.layer)_scale"), let zero = node.int("a\(key.layer)_zero"),
                          case .tensor(let w)? = node.attributes["w\(key.layer)_scales"] else {
                        lines.append("  \(names[key]!): float32")
                        continue
                    }
                    let ws = w.floats
                    lines.append(String(format: "  %@: int8, input scale %.5g zero %d, weight scales %.3g...%.3g (%d channels)",
                                        names[key]!, scale, zero, ws.min() ?? 0, ws.max() ?? 0, ws.count))
                }
            }
            lines.append("tensors (\(graph.initializers.count)):")
            for (name, t) in graph.initializers.sorted(by: { $0.key < $1.key }) {
                lines.append("  \(name): \(t.dtype.name) \(t.shape) (\(bytes(t.byteCount)))")
            }
            return lines.joined(separator: "\n")
        }
        lines.append("format:     \(m["format"] ?? "?")" + (m["external_data"].map { " (external data: \($0))" } ?? ""))
        lines.append("producer:   \(m["producer"] ?? "?") \(m["producer_version"] ?? "")")
        lines.append("opset:      \(m["opset"] ?? "?") (IR version \(m["ir_version"] ?? "?"))")
        let p = graph.parameterCount
        lines.append("parameters: \(grouped(p.elements)) (\(bytes(p.bytes)))")
        lines.append("inputs:")
        for v in graph.inputs { lines.append("  \(v.name): \(v.dtype.name) \(v.shape.map(describe) ?? "[?]")") }
        lines.append("outputs:")
        for v in graph.outputs { lines.append("  \(v.name): \(v.dtype.name) \(v.shape.map(describe) ?? "[?]")") }
        lines.append("operators (\(graph.nodes.count) nodes):")
        for (op, count) in graph.opHistogram { lines.append("  \(op.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) \(count)") }
        if let a = Architecture.recognise(graph) {
            lines.append("architecture:")
            lines.append("  family:   \(a.family)")
            lines.append("  variant:  \(a.variant ?? "none of the published ones")")
            lines.append("  depths:   \(a.depths.map(String.init).joined(separator: ", "))")
            lines.append("  dims:     \(a.dims.map(String.init).joined(separator: ", "))")
            lines.append("  classes:  \(a.classes.map(String.init) ?? "?")")
            lines.append("  stem:     \(a.stem)")
        } else {
            lines.append("architecture: not recognised as ConvNeXt (no depthwise 7x7 blocks)")
        }
        return lines.joined(separator: "\n")
    }

    static func show(_ v: MetadataValue) -> String {
        switch v {
        case .string(let s): return "\"\(s)\""
        case .int(let i): return String(i)
        case .float(let f): return String(f)
        case .double(let d): return String(d)
        case .bool(let b): return String(b)
        case .ints(let a): return "\(a)"
        case .floats(let a): return "\(a)"
        case .strings(let a): return a.count > 12 ? "[\(a.count) strings: \(a.prefix(3).joined(separator: ", ")), …]" : "\(a)"
        }
    }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    static func bytes(_ n: Int) -> String {
        if n >= 1 << 30 { return String(format: "%.2f GiB", Double(n) / Double(1 << 30)) }
        if n >= 1 << 20 { return String(format: "%.1f MiB", Double(n) / Double(1 << 20)) }
        if n >= 1 << 10 { return String(format: "%.1f KiB", Double(n) / Double(1 << 10)) }
        return "\(n) B"
    }
}
