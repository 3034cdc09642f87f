import Foundation

/// A second `.cnx` reader, written from Formats/CNX.md alone: no CNXReader, no CNXGraph types, no
/// zlib. It walks every byte of a file and lists every way the file departs from the document:
/// a field out of place, a nonzero pad or reserved byte, a wrong checksum, and any element type,
/// operation, input, attribute, metadata key or graph property the document's tables do not list
/// (the names come from `SpecDocument`, parsed from the document itself).
struct SpecReader {
    let spec: SpecDocument
    let bytes: [UInt8]
    private(set) var problems: [String] = []
    /// What the file holds, for tests that check the files cover the document: operations,
    /// `op.attribute` names, element types, metadata keys and graph properties met.
    private(set) var seen: Set<String> = []

    /// What the walk learnt, for the cross-checks between sections.
    /// One tensor-table entry: its name, whether it is an initializer, its element type (when
    /// documented) and shape, where its bytes are (from the data section) and their CRC-32.
    private struct Entry {
        var name: String, initializer: Bool, dtype: String?, shape: [Int64]
        var offset: Int, byteCount: Int, crc: UInt32
        /// Where the entry's `offset` field is, for messages.
        var dataOffsetField: Int
        /// Quantization kind 1 (`per channel`): the axis and the table indices of the scales and
        /// zero points (nil: UINT64_MAX, symmetric).
        var quantization: (axis: Int, scales: Int, zeroPoints: Int?)?
    }

    private struct AttributeRecord {
        var name: String
        /// A type name of the document's "Attribute types" table.
        var type: String
        /// The tensor-table index of a tensor attribute; the value of an int or float one.
        var tensor: Int?
        var int: Int64?
        var float: Float?
    }

    private struct NodeRecord {
        var name: String
        var op: String
        var inputs: [String]
        var attributes: [AttributeRecord]
    }

    private var dataOffset = 0
    private var entries: [Entry] = []
    private var nodes: [NodeRecord] = []

    init(spec: SpecDocument, bytes: [UInt8]) {
        self.spec = spec
        self.bytes = bytes
        do {
            try walk()
        } catch let stop as Stop {
            problems.append(stop.message)
        } catch {
            problems.append("\(error)")
        }
    }

    private struct Stop: Error { var message: String }

    private mutating func problem(_ message: String) { problems.append(message) }

    // MARK: - Bytes

    private struct Cursor {
        let bytes: [UInt8]
        var at: Int
        let end: Int
        let section: String

        mutating func take(_ n: Int, _ what: String) throws -> ArraySlice<UInt8> {
            guard n >= 0, at <= end, n <= end - at else {
                throw Stop(message: "\(section): \(what) at byte \(at) needs \(n) bytes, the section ends at byte \(end)")
            }
            defer { at += n }
            return bytes[at..<at + n]
        }

        mutating func unsigned(_ n: Int, _ what: String) throws -> UInt64 {
            var v: UInt64 = 0
            for (i, b) in try take(n, what).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
            return v
        }

        mutating func u8(_ what: String) throws -> UInt8 { UInt8(try unsigned(1, what)) }
        mutating func u16(_ what: String) throws -> UInt16 { UInt16(try unsigned(2, what)) }
        mutating func u32(_ what: String) throws -> UInt32 { UInt32(try unsigned(4, what)) }
        mutating func u64(_ what: String) throws -> UInt64 { try unsigned(8, what) }
        mutating func i32(_ what: String) throws -> Int32 { Int32(bitPattern: try u32(what)) }
        mutating func i64(_ what: String) throws -> Int64 { Int64(bitPattern: try u64(what)) }
        mutating func f32(_ what: String) throws -> Float { Float(bitPattern: try u32(what)) }

        /// A count, checked against the bytes left (each entry takes at least `minimum`).
        mutating func count(_ what: String, minimum: Int) throws -> Int {
            let n = try u64(what)
            guard n <= UInt64((end - at) / max(minimum, 1)) else {
                throw Stop(message: "\(section): \(what) \(n) cannot fit in the \(end - at) bytes left")
            }
            return Int(n)
        }

        /// `cnx_string`: a uint64 length, then UTF-8.
        mutating func string(_ what: String) throws -> String {
            let n = try count("\(what) length", minimum: 1)
            let raw = try take(n, what)
            guard let s = String(bytes: raw, encoding: .utf8) else {
                throw Stop(message: "\(section): \(what) at byte \(at - n) is not UTF-8")
            }
            return s
        }
    }

    private static func sortedUnique(_ names: [String]) -> Bool {
        zip(names, names.dropFirst()).allSatisfy { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    // MARK: - The file

    private mutating func walk() throws {
        guard bytes.count >= 96 else { throw Stop(message: "the file has \(bytes.count) bytes, less than the 96-byte fixed header") }
        var h = Cursor(bytes: bytes, at: 0, end: 96, section: "fixed header")
        if Array(try h.take(4, "magic")) != [0x43, 0x4E, 0x58, 0x00] { problem("fixed header: the magic is not CNX\\0") }
        let major = try h.u16("version_major"), minor = try h.u16("version_minor")
        if (major, minor) != spec.version {
            problem("fixed header: version \(major).\(minor), the document describes \(spec.version.major).\(spec.version.minor)")
        }
        let storedCRC = try h.u32("header_crc32")
        if try h.u32("flags") != 0 { problem("fixed header: flags are not 0") }
        var sections: [(name: String, offset: Int, size: Int)] = []
        for name in ["metadata", "graph", "tensors"] {
            sections.append((name, Int(clamping: try h.u64("\(name)_offset")), Int(clamping: try h.u64("\(name)_size"))))
        }
        dataOffset = Int(clamping: try h.u64("data_offset"))
        let dataSize = Int(clamping: try h.u64("data_size"))
        if try h.take(16, "reserved").contains(where: { $0 != 0 }) { problem("fixed header: reserved bytes are not zero") }

        // Writers place the sections back to back after the fixed header, then pad to 64.
        var expected = 96
        for s in sections {
            if s.offset != expected {
                problem("fixed header: the \(s.name) section starts at byte \(s.offset), not \(expected) where the one before ends")
            }
            expected = s.offset &+ s.size
        }
        guard dataOffset <= bytes.count, dataSize == bytes.count - dataOffset else {
            throw Stop(message: "the file has \(bytes.count) bytes, the header says \(dataOffset) + \(dataSize)")
        }
        guard dataOffset % 64 == 0, dataOffset >= expected, dataOffset - expected < 64 else {
            throw Stop(message: "fixed header: data_offset \(dataOffset) is not the first multiple of 64 at or after byte \(expected)")
        }
        if bytes[expected..<dataOffset].contains(where: { $0 != 0 }) { problem("padding before the data section is not zero") }
        for s in sections where !(s.offset >= 96 && s.offset <= dataOffset && s.size <= dataOffset - s.offset) {
            throw Stop(message: "fixed header: the \(s.name) section (\(s.offset), \(s.size) bytes) is not inside bytes 96..<\(dataOffset)")
        }
        var header = Array(bytes[0..<dataOffset])
        for i in 8..<12 { header[i] = 0 }
        if referenceCRC32(header) != storedCRC { problem("header_crc32 does not match bytes 0..<\(dataOffset)") }

        // The tensor table first: attributes refer to its entries.
        var t = Cursor(bytes: bytes, at: sections[2].offset, end: sections[2].offset + sections[2].size, section: "tensor table")
        try walkTensorTable(&t)
        var m = Cursor(bytes: bytes, at: sections[0].offset, end: sections[0].offset + sections[0].size, section: "metadata")
        try walkMetadata(&m)
        var g = Cursor(bytes: bytes, at: sections[1].offset, end: sections[1].offset + sections[1].size, section: "graph")
        try walkGraph(&g)
        for c in [t, m, g] where c.at != c.end {
            problem("\(c.section): \(c.end - c.at) bytes left over after the last field (ends at byte \(c.end))")
        }
        checkData(dataOffset: dataOffset, dataSize: dataSize)
        checkNodes()
    }

    // MARK: - Metadata

    private mutating func walkMetadata(_ c: inout Cursor) throws {
        let count = try c.count("entry count", minimum: 10)
        var keys: [String] = []
        for i in 0..<count {
            let key = try c.string("entry \(i) key")
            keys.append(key)
            let at = c.at
            let code = try c.u8("'\(key)' type")
            guard let type = spec.metadataTypes[code] else {
                throw Stop(message: "metadata: '\(key)' has type code \(code) at byte \(at), which the document does not list")
            }
            switch type {
            case "string": _ = try c.string("'\(key)' value")
            case "int64": _ = try c.i64("'\(key)' value")
            case "float32": _ = try c.f32("'\(key)' value")
            case "float64": _ = try c.u64("'\(key)' value")
            case "bool":
                if try c.u8("'\(key)' value") > 1 { problem("metadata: '\(key)' is a bool that is neither 0 nor 1") }
            case "int64 array":
                for j in 0..<(try c.count("'\(key)' length", minimum: 8)) { _ = try c.i64("'\(key)' element \(j)") }
            case "float32 array":
                for j in 0..<(try c.count("'\(key)' length", minimum: 4)) { _ = try c.f32("'\(key)' element \(j)") }
            case "string array":
                for j in 0..<(try c.count("'\(key)' length", minimum: 8)) { _ = try c.string("'\(key)' element \(j)") }
            default:
                throw Stop(message: "metadata: the document's type '\(type)' has no layout this reader knows")
            }
            seen.insert("metadata \(key)")
            if let documented = spec.metadataKeys[key] {
                if !documented.components(separatedBy: " or ").contains(type) {
                    problem("metadata: '\(key)' is a \(type), the document says \(documented)")
                }
            } else {
                problem("metadata: key '\(key)' is not documented")
            }
        }
        if !Self.sortedUnique(keys) { problem("metadata: keys are not sorted and unique") }
    }

    // MARK: - Graph

    private mutating func valueInfo(_ c: inout Cursor, _ what: String) throws {
        let name = try c.string("\(what) name")
        let code = try c.i32("\(what) '\(name)' dtype")
        if spec.dtypes[code] == nil { problem("graph: \(what) '\(name)' has element type \(code), which the document does not list") }
        let rank = try c.i64("\(what) '\(name)' rank")
        guard rank != -1 else { return }
        guard rank >= 0, rank <= Int64(c.end - c.at) else { throw Stop(message: "graph: \(what) '\(name)' has rank \(rank)") }
        for axis in 0..<Int(rank) {
            let at = c.at
            let kindCode = try c.u8("\(what) '\(name)' dim \(axis) kind")
            switch spec.dimKinds[kindCode] {
            case "fixed":
                if try c.i64("dim value") < 0 { problem("graph: \(what) '\(name)' dim \(axis) is negative") }
            case "symbolic":
                _ = try c.string("dim symbol")
                let num = try c.i64("dim num"), den = try c.i64("dim den")
                if num < 1 || den < 1 { problem("graph: \(what) '\(name)' dim \(axis) has factor \(num)/\(den)") }
            case "unknown":
                break
            default:
                throw Stop(
                    message: "graph: \(what) '\(name)' dim \(axis) has kind \(kindCode) at byte \(at), which the document does not list")
            }
        }
    }

    private mutating func walkGraph(_ c: inout Cursor) throws {
        var keys: [String] = []
        for i in 0..<(try c.count("property count", minimum: 16)) {
            let key = try c.string("property \(i) key")
            _ = try c.string("property '\(key)' value")
            keys.append(key)
            seen.insert("property \(key)")
            if !spec.propertyKeys.contains(key) { problem("graph: property '\(key)' is not documented") }
        }
        if !Self.sortedUnique(keys) { problem("graph: properties are not sorted and unique") }
        for i in 0..<(try c.count("input count", minimum: 20)) { try valueInfo(&c, "input \(i)") }
        for i in 0..<(try c.count("output count", minimum: 20)) { try valueInfo(&c, "output \(i)") }
        for i in 0..<(try c.count("node count", minimum: 40)) {
            let name = try c.string("node \(i) name")
            let op = try c.string("node '\(name)' op type")
            var node = NodeRecord(name: name, op: op, inputs: [], attributes: [])
            for j in 0..<(try c.count("node '\(name)' input count", minimum: 8)) { node.inputs.append(try c.string("input \(j)")) }
            for j in 0..<(try c.count("node '\(name)' output count", minimum: 8)) { _ = try c.string("output \(j)") }
            for j in 0..<(try c.count("node '\(name)' attribute count", minimum: 13)) {
                let attribute = try c.string("node '\(name)' attribute \(j) name")
                let at = c.at
                let code = try c.u8("attribute '\(attribute)' type")
                guard let type = spec.attributeTypes[code] else {
                    throw Stop(
                        message:
                            "graph: node '\(name)' attribute '\(attribute)' has type code \(code) at byte \(at), which the document does not list"
                    )
                }
                var tensor: Int?, int: Int64?, float: Float?
                switch type {
                case "float": float = try c.f32("value")
                case "int": int = try c.i64("value")
                case "string": _ = try c.string("value")
                case "tensor": tensor = Int(clamping: try c.u64("tensor index"))
                case "floats": for k in 0..<(try c.count("length", minimum: 4)) { _ = try c.f32("element \(k)") }
                case "ints": for k in 0..<(try c.count("length", minimum: 8)) { _ = try c.i64("element \(k)") }
                default: throw Stop(message: "graph: the document's attribute type '\(type)' has no layout this reader knows")
                }
                node.attributes.append(AttributeRecord(name: attribute, type: type, tensor: tensor, int: int, float: float))
            }
            if !Self.sortedUnique(node.attributes.map(\.name)) { problem("graph: node '\(name)': attributes are not sorted and unique") }
            nodes.append(node)
        }
    }

    // MARK: - Tensor table and data

    private mutating func walkTensorTable(_ c: inout Cursor) throws {
        for i in 0..<(try c.count("tensor count", minimum: 60)) {
            let name = try c.string("tensor \(i) name")
            let flags = try c.u32("'\(name)' flags")
            if flags & ~1 != 0 { problem("tensor '\(name)': flag bits \(flags & ~1) are not documented") }
            let code = try c.i32("'\(name)' dtype")
            let dtype = spec.dtypes[code]
            if let dtype { seen.insert("dtype \(dtype.name)") }
            if dtype == nil { problem("tensor '\(name)': element type \(code) is not documented") }
            let rank = Int(try c.u32("'\(name)' rank"))
            guard rank <= (c.end - c.at) / 8 else { throw Stop(message: "tensor '\(name)': rank \(rank) cannot fit") }
            var shape: [Int64] = []
            for axis in 0..<rank {
                let d = try c.i64("'\(name)' dim \(axis)")
                if d < 0 { problem("tensor '\(name)': dim \(axis) is \(d)") }
                shape.append(d)
            }
            let record = Array(try c.take(24, "'\(name)' quantization"))
            var quantization: (axis: Int, scales: Int, zeroPoints: Int?)?
            switch spec.quantizationKinds[record[0]] {
            case "none":
                if record.contains(where: { $0 != 0 }) { problem("tensor '\(name)': quantization kind none with nonzero parameters") }
            case "per channel":
                // uint8 kind; uint8 reserved[3]; int32 axis; uint64 scales; uint64 zero_points.
                if record[1..<4].contains(where: { $0 != 0 }) { problem("tensor '\(name)': quantization reserved bytes are not zero") }
                var r = LittleEndianBytes(bytes: record, at: 4)
                let axis = Int(Int32(bitPattern: try r.u32()))
                let scales = try r.u64(), zeros = try r.u64()
                if !(0..<rank).contains(axis) {
                    problem("tensor '\(name)': quantization axis \(axis) is not an axis of its shape \(shape)")
                }
                if dtype?.name != "int8" && dtype?.name != "uint8" {
                    problem("tensor '\(name)': quantization kind 1 on a \(dtype?.name ?? "?") tensor")
                }
                quantization = (axis, Int(clamping: scales), zeros == UInt64.max ? nil : Int(clamping: zeros))
                seen.insert("quantization per channel")
            case let kind?:
                problem("tensor '\(name)': quantization kind \(kind), which this reader does not know")
            case nil:
                problem("tensor '\(name)': quantization kind \(record[0]) is not documented")
            }
            let offsetField = c.at
            let offset = Int(clamping: try c.u64("'\(name)' offset"))
            let byteCount = Int(clamping: try c.u64("'\(name)' byte_count"))
            let crc = try c.u32("'\(name)' crc32")
            if let dtype {
                let elements = shape.reduce(Int64(1)) { $0.multipliedReportingOverflow(by: $1).partialValue }
                if elements.multipliedReportingOverflow(by: Int64(dtype.size)).partialValue != Int64(byteCount) {
                    problem("tensor '\(name)': byte_count \(byteCount) is not \(shape) x \(dtype.size) bytes of \(dtype.name)")
                }
            }
            entries.append(
                Entry(
                    name: name, initializer: flags & 1 != 0, dtype: dtype?.name, shape: shape, offset: offset,
                    byteCount: byteCount, crc: crc, dataOffsetField: offsetField, quantization: quantization))
        }
        checkQuantizationTensors()
        // Initializers first, sorted by name; then attribute tensors.
        let initializers = entries.prefix { $0.initializer }
        if entries.dropFirst(initializers.count).contains(where: \.initializer) {
            problem("tensor table: an initializer follows an attribute tensor")
        }
        if !Self.sortedUnique(initializers.map(\.name)) { problem("tensor table: initializers are not sorted by name and unique") }
    }

    /// The tensors a kind-1 record names: after the attribute tensors, in the order of the
    /// tensors they belong to (scales, then zero points), named `<tensor>:scales` and
    /// `<tensor>:zero_points`, not initializers, not quantized; float32 [shape[axis]] scales.
    private var quantizationTensors: [Int] = []

    private mutating func checkQuantizationTensors() {
        for (i, e) in entries.enumerated() {
            guard let q = e.quantization else { continue }
            let channels = q.axis >= 0 && q.axis < e.shape.count ? e.shape[q.axis] : -1
            for (index, suffix, dtype) in [(q.scales, "scales", "float32"), (q.zeroPoints, "zero_points", e.dtype ?? "?")] {
                guard let index else { continue }
                quantizationTensors.append(index)
                guard index < entries.count else {
                    problem("tensor '\(e.name)': quantization \(suffix) refers to tensor \(index) of \(entries.count)"); continue
                }
                let t = entries[index]
                if t.initializer || t.quantization != nil || t.name != "\(e.name):\(suffix)" || t.dtype != dtype || t.shape != [channels]
                    || index <= i
                {
                    problem(
                        "tensor '\(e.name)': its quantization \(suffix) is '\(t.name)' (\(t.dtype ?? "?") \(t.shape)), not a \(dtype) [\(channels)] tensor '\(e.name):\(suffix)' after it"
                    )
                }
            }
        }
        let expected = Array(entries.count - quantizationTensors.count..<entries.count)
        if quantizationTensors != expected {
            problem(
                "tensor table: quantization tensors \(quantizationTensors) are not the last entries, in the order of the tensors they belong to"
            )
        }
    }

    /// The float32 values of entry `index`.
    private func floats(_ index: Int) -> [Float] {
        let e = entries[index]
        var r = LittleEndianBytes(bytes: bytes, at: dataOffset + e.offset)
        return (0..<(e.byteCount / 4)).compactMap { _ in try? r.f32() }
    }

    /// Each tensor at the first multiple of 64 after the one before, gaps zero, CRC-32 right,
    /// and the data section ends with the last tensor.
    private mutating func checkData(dataOffset: Int, dataSize: Int) {
        var end = 0
        for e in entries {
            let expected = (end + 63) / 64 * 64
            guard e.offset == expected else {
                problem(
                    "tensor '\(e.name)': offset \(e.offset) (field at byte \(e.dataOffsetField)) is not \(expected), the first multiple of 64 after the tensor before"
                )
                return
            }
            guard e.byteCount <= dataSize - e.offset else {
                problem("tensor '\(e.name)': its bytes run past the data section")
                return
            }
            if bytes[dataOffset + end..<dataOffset + e.offset].contains(where: { $0 != 0 }) {
                problem("data section: padding before tensor '\(e.name)' is not zero")
            }
            if referenceCRC32(bytes[dataOffset + e.offset..<dataOffset + e.offset + e.byteCount]) != e.crc {
                problem("tensor '\(e.name)': crc32 does not match its bytes")
            }
            end = e.offset + e.byteCount
        }
        if end != dataSize { problem("data section: data_size \(dataSize) is not the end of the last tensor, \(end)") }
    }

    // MARK: - Operations

    /// Every node against the document's operation tables; attribute tensors against the table.
    private mutating func checkNodes() {
        var initializers: [String: Int] = [:]
        for (i, e) in entries.enumerated() where e.initializer { initializers[e.name] = i }
        var attributeTensors: [Int] = []
        for node in nodes {
            let label = "\(node.op) node '\(node.name)'"
            seen.insert("op \(node.op)")
            for a in node.attributes { seen.insert("attribute \(node.op).\(a.name)") }
            for a in node.attributes {
                guard let index = a.tensor else { continue }
                attributeTensors.append(index)
                guard index < entries.count else {
                    problem("\(label): attribute '\(a.name)' refers to tensor \(index) of \(entries.count)"); continue
                }
                if entries[index].initializer || entries[index].name != "\(node.name):\(a.name)" {
                    problem(
                        "\(label): attribute '\(a.name)' refers to tensor '\(entries[index].name)', not an attribute tensor named '\(node.name):\(a.name)'"
                    )
                }
            }
            if let onnx = spec.onnxOps[node.op] {
                if !onnx.inputs.contains(node.inputs.count) {
                    problem("\(label): \(node.inputs.count) inputs, the document says \(onnx.inputs)")
                }
                for a in node.attributes where !onnx.attributes.contains(a.name) {
                    problem("\(label): attribute '\(a.name)' is not documented for \(node.op)")
                }
            } else if let fused = spec.fusedOps[node.op] {
                checkFused(node, fused, label: label, initializers: initializers)
            } else {
                problem("\(label): operation '\(node.op)' is not documented")
            }
        }
        // Attribute tensors: each entry after the initializers, once, in the order the graph meets them.
        let expected = Array(entries.indices.filter { !entries[$0].initializer && !quantizationTensors.contains($0) })
        if attributeTensors != expected {
            problem("tensor table: attribute tensors \(expected) are not those the graph refers to, in order (\(attributeTensors))")
        }
    }

    private mutating func checkFused(_ node: NodeRecord, _ op: SpecDocument.FusedOp, label: String, initializers: [String: Int]) {
        if node.inputs.count > op.slots.count { problem("\(label): \(node.inputs.count) inputs, the document lists \(op.slots.count)") }
        var slotDType: [String: String] = [:]
        var slotShape: [String: [Int64]] = [:]
        for (i, slot) in op.slots.enumerated() {
            let input = i < node.inputs.count ? node.inputs[i] : ""
            if input.isEmpty {
                if slot.required { problem("\(label): required input \(i) (\(slot.name)) is missing") }
                continue
            }
            guard let index = initializers[input] else { continue }
            let e = entries[index]
            slotDType[slot.name] = e.dtype
            slotShape[slot.name] = e.shape
            if let dtype = e.dtype, !slot.dtypes.contains(dtype) {
                problem(
                    "\(label): input \(i) (\(slot.name)) is \(dtype), the document allows \(slot.dtypes.sorted().joined(separator: ", "))")
            }
        }
        let present = Dictionary(node.attributes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for a in node.attributes {
            guard let documented = op.attributes[a.name] else {
                problem("\(label): attribute '\(a.name)' is not documented for \(node.op)")
                continue
            }
            if documented.type != a.type { problem("\(label): attribute '\(a.name)' is a \(a.type), the document says \(documented.type)") }
            if let dtype = documented.tensorDType, let index = a.tensor, index < entries.count, entries[index].dtype != dtype {
                problem("\(label): attribute '\(a.name)' holds \(entries[index].dtype ?? "?"), the document says \(dtype)")
            }
        }
        for (name, documented) in op.attributes {
            switch documented.requirement {
            case .always:
                if present[name] == nil { problem("\(label): required attribute '\(name)' is missing") }
            case .optional:
                break
            case .whenInt8(let slot):
                let int8 = slotDType[slot] == "int8"
                if int8 && present[name] == nil { problem("\(label): '\(slot)' is int8 but attribute '\(name)' is missing") }
                if !int8 && present[name] != nil { problem("\(label): attribute '\(name)' is written although '\(slot)' is not int8") }
                if int8, let a = present[name] { checkInt8(a, weight: slotShape[slot] ?? [], label: label) }
            }
        }
        // An int8 weight carries its per-output-channel scales in its table entry (int8 layers).
        for (i, slot) in op.slots.enumerated() where slotDType[slot.name] == "int8" {
            guard let index = initializers[node.inputs[i]] else { continue }
            let e = entries[index]
            guard let q = e.quantization else {
                problem("\(label): int8 input \(i) (\(slot.name)) has no quantization in the tensor table"); continue
            }
            if q.axis != 1 || q.zeroPoints != nil {
                problem("\(label): int8 input \(i) (\(slot.name)) is not quantized symmetrically along axis 1")
            }
            if q.scales < entries.count, !floats(q.scales).allSatisfy({ $0 > 0 && $0.isFinite }) {
                problem("\(label): the scales of int8 input \(i) (\(slot.name)) are not all positive and finite")
            }
        }
    }

    /// The value ranges the document's "int8 layers" section gives.
    private mutating func checkInt8(_ a: AttributeRecord, weight: [Int64], label: String) {
        if a.name.hasSuffix("_zero"), let v = a.int, !(0...255).contains(v) { problem("\(label): \(a.name) \(v) is outside 0..255") }
        if a.name.hasSuffix("_scale"), let v = a.float, !(v > 0 && v.isFinite) {
            problem("\(label): \(a.name) \(v) is not positive and finite")
        }
    }
}
