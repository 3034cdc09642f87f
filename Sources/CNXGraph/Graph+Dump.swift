extension Graph {
    /// A text listing for people: inputs, then one line per node (constants shown with their
    /// shapes), then outputs. `--dump-after` prints it.
    public func dump() -> String {
        var lines: [String] = []
        for v in inputs { lines.append("input \(v.name): \(v.dtype.name) \(v.shape.map(describe) ?? "[?]")") }
        for n in nodes {
            let args = n.inputs.map { name -> String in
                if let t = initializers[name] { return "\(name)<\(t.shape.map(String.init).joined(separator: "x"))>" }
                return name
            }
            let attrs = n.attributes.sorted { $0.key < $1.key }.map { key, value -> String in
                switch value {
                case .int(let v): return "\(key)=\(v)"
                case .float(let v): return "\(key)=\(v)"
                case .string(let v): return "\(key)=\"\(v)\""
                case .ints(let v): return "\(key)=\(v)"
                case .floats(let v): return "\(key)=\(v.count > 8 ? "[\(v.count) floats]" : "\(v)")"
                case .tensor(let t): return "\(key)=tensor<\(t.shape)>"
                }
            }
            lines.append(
                "\(n.outputs.joined(separator: ", ")) = \(n.op.rawValue)(\(args.joined(separator: ", ")))"
                    + (attrs.isEmpty ? "" : " {\(attrs.joined(separator: ", "))}") + "  # \(n.name)")
        }
        for v in outputs { lines.append("output \(v.name)") }
        return lines.joined(separator: "\n")
    }
}
