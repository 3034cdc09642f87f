import CNXConvert
import CNXFormat
import CNXGraph
import CNXQuantize
import CNXReference
import CNXValidate
import Foundation

/// What `inspect` prints, as text or as one JSON object.
enum Report {
    /// One fused layer of a `.cnx`: its name in the project's vocabulary, its op, the weight
    /// tensors it reads (their names are the source's), and the precision of each GEMM in it.
    struct Layer {
        var name: String
        var op: String
        var weights: [String]
        var gemms: [(name: String, detail: String, int8: Bool)]
        /// A block's depthwise convolution: "float32", or "bfloat16" (Formats/CNX.md, `cnx.Block`).
        var depthwise: String?
        /// A block with the quadratic GELU (`gelu_quadratic`, Formats/CNX.md).
        var quadraticGELU = false
    }

    static func layers(_ graph: Graph) -> [Layer] {
        let fused = LayerNames.fused(graph)
        let gemms = Int8Lowering.layerNames(graph)
        return fused.keys.sorted().map { i in
            let node = graph.nodes[i]
            let weights = node.inputs.filter { graph.initializers[$0] != nil }
            let mine = gemms.keys.filter { $0.node == i }.sorted()
            let payload = try? FusedPayload(node, in: graph)
            var depthwise: String?, quadratic = false
            if case .block(let op)? = payload {
                depthwise = op.depthwise.onBFloat16 ? "bfloat16" : "float32"
                quadratic = op.activation == .geluQuadratic
            }
            return Layer(
                name: fused[i]!, op: node.op.rawValue, weights: weights,
                gemms: mine.map { key in
                    let name = gemms[key]!
                    let precision = payload?.layers[key.layer]?.precision
                    guard case .int8(let q)? = precision else { return (name, precision?.name ?? "float32", false) }
                    let ws = q.weightScales
                    return (
                        name,
                        String(
                            format: "int8, input scale %.5g zero %d, weight scales %.3g...%.3g (%d channels)",
                            q.activationScale, q.activationZero, ws.min() ?? 0, ws.max() ?? 0, ws.count), true
                    )
                }, depthwise: depthwise, quadraticGELU: quadratic)
        }
    }

    /// `stem, stages.0.blocks.0...2, stages.1.downsample, ..., head`: the names a model of this
    /// architecture gets once converted.
    static func expectedLayers(_ a: Architecture, head: Bool) -> String {
        var parts = ["stem"]
        for (s, d) in a.depths.enumerated() {
            if s > 0 { parts.append("stages.\(s).downsample") }
            parts.append(d == 1 ? "stages.\(s).blocks.0" : "stages.\(s).blocks.0...\(d - 1)")
        }
        if head { parts.append("head") }
        return parts.joined(separator: ", ")
    }

    static func classesText(_ graph: Graph, _ a: Architecture) -> String {
        if let c = a.classes { return String(c) }
        if graph.outputs.count > 1 || (graph.outputs.first?.shape?.count ?? 0) == 4 {
            return "none (a backbone: \(graph.outputs.count) feature map\(graph.outputs.count == 1 ? "" : "s"))"
        }
        return "?"
    }

    static let tool = "convnext-convert \(converterVersion)"
    static let vocabulary = "the names --keep-float, quantize --sensitivity and validate --per-layer use"

    /// The lines `inspect` gives every model: parameters, inputs, outputs and operators.
    static func signature(_ graph: Graph) -> [String] {
        let p = graph.parameterCount
        var lines = ["parameters: \(grouped(p.elements)) (\(bytes(p.bytes)))", "inputs:"]
        lines += graph.inputs.map { "  \($0.name): \($0.dtype.name) \($0.shape.map(describe) ?? "[?]")" }
        lines.append("outputs:")
        lines += graph.outputs.map { "  \($0.name): \($0.dtype.name) \($0.shape.map(describe) ?? "[?]")" }
        lines.append("operators (\(graph.nodes.count) nodes):")
        lines += graph.opHistogram.map { op, count in "  \(op.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) \(count)" }
        return lines
    }

    static func inspect(_ loaded: LoadedModel, path: String) -> String {
        let graph = loaded.graph
        var lines: [String] = []
        let m = graph.metadata
        lines.append("file:       \(path)")
        if loaded.format == "cnx" {
            lines.append("format:     cnx")
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            lines.append("size:       \(bytes(size))")
            lines.append("read by:    \(tool)")
            lines.append("metadata:")
            for (k, v) in loaded.metadata.sorted(by: { $0.key < $1.key }) { lines.append("  \(k) = \(show(v))") }
            lines += signature(graph)
            let all = layers(graph)
            if !all.isEmpty {
                let gemms = all.flatMap(\.gemms), int8 = gemms.filter(\.int8).count
                let half = gemms.filter { $0.detail == "bfloat16" || $0.detail == "float16" }.count
                lines.append(
                    "layers (\(all.count), \(vocabulary); \(int8) of \(gemms.count) GEMM layers int8"
                        + (half > 0 ? ", \(half) \(gemms.first { $0.detail == "bfloat16" } != nil ? "bfloat16" : "float16")):" : "):"))
                for l in all {
                    lines.append(
                        "  \(l.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(l.op.padding(toLength: 16, withPad: " ", startingAt: 0)) \(l.weights.count) tensors"
                    )
                    if int8 > 0 || half > 0 {
                        if l.depthwise == "bfloat16" { lines.append("    \(l.name).dw: bfloat16 depthwise (input rounded, float32 sums)") }
                        for g in l.gemms { lines.append("    \(g.name): \(g.detail)") }
                        if l.quadraticGELU {
                            lines.append("    \(l.name).gelu: the quadratic GELU (within 1.12e-5 of exact; Formats/CNX.md)")
                        }
                    }
                }
            }
            var owner: [String: String] = [:]
            for l in all { for w in l.weights where owner[w] == nil { owner[w] = l.name } }
            lines.append("tensors (\(graph.initializers.count), each with the layer that reads it):")
            for (name, t) in graph.initializers.sorted(by: { $0.key < $1.key }) {
                lines.append("  \(name): \(t.dtype.name) \(t.shape) (\(bytes(t.byteCount)))" + (owner[name].map { "  [\($0)]" } ?? ""))
            }
            return lines.joined(separator: "\n")
        }
        lines.append("format:     \(m["format"] ?? loaded.format)" + (m["external_data"].map { " (external data: \($0))" } ?? ""))
        if m["producer"] != nil || loaded.format == "onnx" {
            let version = m["producer_version"].map { $0.isEmpty ? "" : " \($0)" } ?? ""
            lines.append("producer:   \(m["producer"] ?? "?")\(version)")
        }
        // The ONNX file's own opset and IR version (a graph read from a checkpoint has neither).
        if loaded.format == "onnx" || m["ir_version"] != nil {
            lines.append("opset:      \(m["opset"] ?? "?") (IR version \(m["ir_version"] ?? "?"))")
        }
        lines.append("read by:    \(tool)")
        if !loaded.metadata.isEmpty {
            lines.append("metadata:")
            for (k, v) in loaded.metadata.sorted(by: { $0.key < $1.key }) { lines.append("  \(k) = \(show(v))") }
        }
        lines += signature(graph)
        if let a = Architecture.recognise(graph) {
            lines.append("architecture:")
            lines.append("  family:   \(a.family)")
            lines.append("  variant:  \(a.variant ?? "none of the published ones")")
            lines.append("  depths:   \(a.depths.map(String.init).joined(separator: ", "))")
            lines.append("  dims:     \(a.dims.map(String.init).joined(separator: ", "))")
            lines.append("  classes:  \(classesText(graph, a))")
            lines.append("  stem:     \(a.stem)")
            lines.append("  layers:   \(expectedLayers(a, head: a.classes != nil)) (once converted; \(vocabulary))")
        } else {
            lines.append("architecture: not recognised as ConvNeXt (no depthwise 7x7 blocks)")
        }
        return lines.joined(separator: "\n")
    }

    /// The same as one JSON object.
    static func inspectJSON(_ loaded: LoadedModel, path: String) -> String {
        let graph = loaded.graph
        func values(_ list: [ValueInfo]) -> JSON {
            .array(
                list.map { v in
                    .object([
                        ("name", .string(v.name)), ("dtype", .string(v.dtype.name)),
                        ("shape", v.shape.map { .array($0.map { d in d.value.map { .int($0) } ?? .string(d.description) }) } ?? .null),
                    ])
                })
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let p = graph.parameterCount
        var o: [(String, JSON)] = [
            ("file", .string(path)), ("format", .string(loaded.format)), ("bytes", .int(size)), ("read_by", .string(tool)),
        ]
        if loaded.format == "onnx" {
            o.append(("onnx", .object(graph.metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        o.append(("metadata", .object(loaded.metadata.sorted { $0.key < $1.key }.map { ($0.key, json($0.value)) })))
        o += [
            ("parameters", .int(p.elements)), ("parameter_bytes", .int(p.bytes)),
            ("inputs", values(graph.inputs)), ("outputs", values(graph.outputs)),
            ("operators", .object(graph.opHistogram.map { ($0.0.rawValue, .int($0.1)) })),
        ]
        if let a = Architecture.recognise(graph) {
            o.append(
                (
                    "architecture",
                    .object([
                        ("family", .string(a.family)), ("variant", a.variant.map { .string($0) } ?? .null),
                        ("depths", .array(a.depths.map { .int($0) })), ("dims", .array(a.dims.map { .int($0) })),
                        ("classes", a.classes.map { .int($0) } ?? .null), ("stem", .string(a.stem)),
                    ])
                ))
        } else if loaded.format != "cnx" {
            o.append(("architecture", .null))
        }
        if loaded.format == "cnx" {
            o.append(
                (
                    "layers",
                    .array(
                        layers(graph).map { l in
                            .object([
                                ("name", .string(l.name)), ("op", .string(l.op)), ("weights", .array(l.weights.map { .string($0) })),
                                ("depthwise", l.depthwise.map { .string($0) } ?? .null),
                                (
                                    "gemms",
                                    .array(
                                        l.gemms.map {
                                            .object([("name", .string($0.name)), ("precision", .string($0.int8 ? "int8" : $0.detail))])
                                        })
                                ),
                            ])
                        })
                ))
        } else if let a = Architecture.recognise(graph) {
            o.append(("layers", .array(LayerNames.expected(depths: a.depths, head: a.classes != nil).map { .string($0) })))
        }
        return JSON.object(o).text
    }

    static func json(_ v: MetadataValue) -> JSON {
        switch v {
        case .string(let s): return .string(s)
        case .int(let i): return .int(Int(i))
        case .float(let f): return .number(Double(String(f)) ?? Double(f))
        case .double(let d): return .number(d)
        case .bool(let b): return .bool(b)
        case .ints(let a): return .array(a.map { .int(Int($0)) })
        case .floats(let a): return .array(a.map { .number(Double(String($0)) ?? Double($0)) })
        case .strings(let a): return .array(a.map { .string($0) })
        }
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
