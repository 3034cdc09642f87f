import CNXTestSupport
import Foundation

/// What Formats/CNX.md documents, read from its tables: the names a `.cnx` file may hold. The
/// spec reader (SpecReader.swift) accepts exactly these, so a name the writer emits and the
/// document does not list fails the test, and so does a row removed from the document.
struct SpecDocument {
    /// One input slot of a fused operation.
    struct Slot {
        var name: String
        /// Element type names the slot may hold ("float32", "int8").
        var dtypes: Set<String>
        var required: Bool
    }

    /// When an attribute must be present.
    enum Requirement: Equatable {
        case always
        case optional
        /// Present exactly when the named input's tensor is int8.
        case whenInt8(slot: String)
    }

    struct AttributeSpec {
        /// An attribute type name of the "Attribute types" table ("float", "tensor", ...).
        var type: String
        /// For a tensor attribute: the element type its tensor has.
        var tensorDType: String?
        var requirement: Requirement
    }

    struct FusedOp {
        var slots: [Slot]
        var attributes: [String: AttributeSpec]
    }

    struct ONNXOp {
        var inputs: ClosedRange<Int>
        var attributes: Set<String>
    }

    var metadataTypes: [UInt8: String] = [:]
    /// Standard key -> metadata type name.
    var metadataKeys: [String: String] = [:]
    var propertyKeys: Set<String> = []
    var dimKinds: [UInt8: String] = [:]
    var attributeTypes: [UInt8: String] = [:]
    /// Element type code -> (name, bytes per element).
    var dtypes: [Int32: (name: String, size: Int)] = [:]
    var quantizationKinds: [UInt8: String] = [:]
    /// The version in the document's title ("version 1.2"): what a file the writer emits says.
    var version: (major: UInt16, minor: UInt16) = (0, 0)
    var onnxOps: [String: ONNXOp] = [:]
    var fusedOps: [String: FusedOp] = [:]

    static var path: String { Fixtures.root.appendingPathComponent("Formats/CNX.md").path }

    static func load() throws -> SpecDocument {
        try SpecDocument(markdown: String(contentsOfFile: path, encoding: .utf8))
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    init(markdown: String) throws {
        let sections = Markdown.sections(markdown)
        func section(_ title: String) throws -> Markdown.Section {
            guard let s = sections.first(where: { $0.title == title }) else {
                throw ParseError(description: "Formats/CNX.md has no section '\(title)'")
            }
            return s
        }
        func table(_ title: String, columns: [String]) throws -> [[String: String]] {
            let s = try section(title)
            guard let t = s.tables.first(where: { Set(columns).isSubset(of: $0.header) }) else {
                throw ParseError(description: "section '\(title)' has no table with columns \(columns)")
            }
            return t.rows
        }
        func code(_ row: [String: String], _ column: String) throws -> Int64 {
            guard let cell = row[column], let v = Int64(cell) else {
                throw ParseError(description: "row \(row): '\(column)' is not a number")
            }
            return v
        }
        func name(_ row: [String: String], _ column: String) throws -> String {
            guard let n = Markdown.codeSpans(row[column] ?? "").first else {
                throw ParseError(description: "row \(row): '\(column)' names nothing in backticks")
            }
            return n
        }

        let title = markdown.split(separator: "\n").first.map(String.init) ?? ""
        guard let v = title.range(of: #"version (\d+)\.(\d+)$"#, options: .regularExpression) else {
            throw ParseError(description: "the title '\(title)' does not end with 'version MAJOR.MINOR'")
        }
        let numbers = title[v].dropFirst("version ".count).split(separator: ".").compactMap { UInt16($0) }
        version = (numbers[0], numbers[1])
        for row in try table("Metadata value types", columns: ["code", "type"]) {
            metadataTypes[UInt8(try code(row, "code"))] = try name(row, "type")
        }
        for row in try table("Standard keys", columns: ["key", "type"]) {
            metadataKeys[try name(row, "key")] = row["type"] ?? ""
        }
        for row in try table("Graph properties", columns: ["key"]) {
            propertyKeys.insert(try name(row, "key"))
        }
        for row in try table("Dimension kinds", columns: ["code", "kind"]) {
            dimKinds[UInt8(try code(row, "code"))] = try name(row, "kind")
        }
        for row in try table("Attribute types", columns: ["code", "type"]) {
            attributeTypes[UInt8(try code(row, "code"))] = try name(row, "type")
        }
        for row in try table("Element types", columns: ["code", "dtype", "bytes"]) {
            dtypes[Int32(try code(row, "code"))] = (try name(row, "dtype"), Int(try code(row, "bytes")))
        }
        for row in try table("Quantization kinds", columns: ["code", "kind"]) {
            quantizationKinds[UInt8(try code(row, "code"))] = try name(row, "kind")
        }
        for row in try table("ONNX operators", columns: ["op type", "inputs", "attributes"]) {
            onnxOps[try name(row, "op type")] = ONNXOp(
                inputs: try Self.inputRange(row["inputs"] ?? ""),
                attributes: Set(Markdown.codeSpans(row["attributes"] ?? "")))
        }
        for s in sections where s.level == 3 {
            guard let op = Markdown.codeSpans(s.title).first, op.hasPrefix("cnx.") else { continue }
            guard let inputs = s.tables.first(where: { $0.header.contains("slot") }),
                let attributes = s.tables.first(where: { $0.header.contains("attribute") })
            else {
                throw ParseError(description: "section '\(s.title)' lacks its input or attribute table")
            }
            var fused = FusedOp(slots: [], attributes: [:])
            for (i, row) in inputs.rows.enumerated() {
                guard try code(row, "slot") == Int64(i) else { throw ParseError(description: "\(op): slots are not 0, 1, 2, ...") }
                let dtypes = Set((row["dtype"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                fused.slots.append(Slot(name: try name(row, "input"), dtypes: dtypes, required: row["required"] == "yes"))
            }
            for row in attributes.rows {
                fused.attributes[try name(row, "attribute")] = try Self.attributeSpec(row)
            }
            fusedOps[op] = fused
        }
        for row in try table("Attributes added after 1.0", columns: ["op type", "attribute", "type", "required"]) {
            let op = try name(row, "op type")
            guard fusedOps[op] != nil else {
                throw ParseError(description: "'Attributes added after 1.0' names an unknown operation \(op)")
            }
            fusedOps[op]!.attributes[try name(row, "attribute")] = try Self.attributeSpec(row)
        }
    }

    /// "2", "2-3", "1 or more".
    static func inputRange(_ cell: String) throws -> ClosedRange<Int> {
        let words = cell.split(separator: " ")
        if words.count == 3, words[1] == "or", words[2] == "more", let low = Int(words[0]) { return low...Int.max }
        let bounds = cell.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        if bounds.count == 1 { return bounds[0]...bounds[0] }
        if bounds.count == 2, bounds[0] <= bounds[1] { return bounds[0]...bounds[1] }
        throw ParseError(description: "'\(cell)' is not an input count")
    }

    /// A row with "type" ("float", "tensor float32 [E]") and "required" ("yes", "no",
    /// "when `W1` is int8").
    static func attributeSpec(_ row: [String: String]) throws -> AttributeSpec {
        let type = (row["type"] ?? "").split(separator: " ").map(String.init)
        guard let first = type.first else { throw ParseError(description: "row \(row) has no type") }
        let requirement: Requirement
        let required = row["required"] ?? ""
        if required == "yes" {
            requirement = .always
        } else if required == "no" {
            requirement = .optional
        } else if required.hasPrefix("when "), required.hasSuffix(" is int8"), let slot = Markdown.codeSpans(required).first {
            requirement = .whenInt8(slot: slot)
        } else {
            throw ParseError(description: "row \(row): 'required' is not yes, no or when `INPUT` is int8")
        }
        return AttributeSpec(type: first, tensorDType: first == "tensor" ? type.dropFirst().first : nil, requirement: requirement)
    }
}

/// Just enough Markdown for the document's own tables: ATX headings and pipe tables.
enum Markdown {
    struct Table {
        var header: [String]
        /// Each row by column name, cells trimmed.
        var rows: [[String: String]]
    }

    struct Section {
        var level: Int
        var title: String
        var tables: [Table] = []
    }

    /// The document cut at every heading; each section holds the tables up to the next heading.
    static func sections(_ text: String) -> [Section] {
        var sections: [Section] = []
        var tableLines: [String] = []
        var inCode = false
        func flush() {
            defer { tableLines = [] }
            guard tableLines.count >= 2, !sections.isEmpty else { return }
            let header = cells(tableLines[0])
            let rows = tableLines.dropFirst(2).map { line -> [String: String] in
                var row: [String: String] = [:]
                for (column, cell) in zip(header, cells(line)) { row[column] = cell }
                return row
            }
            sections[sections.count - 1].tables.append(Table(header: header, rows: rows))
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("```") { inCode.toggle() }
            if inCode { continue }
            if line.hasPrefix("|") {
                tableLines.append(line)
                continue
            }
            flush()
            if line.hasPrefix("#") {
                let level = line.prefix { $0 == "#" }.count
                sections.append(Section(level: level, title: line.dropFirst(level).trimmingCharacters(in: .whitespaces)))
            }
        }
        flush()
        return sections
    }

    static func cells(_ line: String) -> [String] {
        var parts = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.first == "" { parts.removeFirst() }
        if parts.last == "" { parts.removeLast() }
        return parts
    }

    /// The text of each `code span` in a cell, in order.
    static func codeSpans(_ text: String) -> [String] {
        let parts = text.split(separator: "`", omittingEmptySubsequences: false)
        return stride(from: 1, to: parts.count - 1, by: 2).map { String(parts[$0]) }
    }
}
