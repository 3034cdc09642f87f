import CNXGraph
import Foundation

/// Loads .cnx files (Formats/CNX.md) by memory-mapping them.
///
/// The file is untrusted input: every count, length, offset and shape product is checked against
/// the file's size before it is used, and every error is a `CNXError` that names the file, the
/// section, field or tensor, and the byte offset.
public enum CNXReader {
    /// Maps `path` and returns its model; tensors borrow the mapped bytes (nothing is copied),
    /// each 64-byte aligned, and keep the mapping alive for as long as any of them lives.
    ///
    /// - Parameters:
    ///   - path: the .cnx file.
    ///   - verify: check every tensor's CRC-32, which reads the whole file. With `false`, only
    ///     the header's checksum is checked (every bound is checked either way).
    /// - Throws: `CNXError` for a file that is missing, not a .cnx file, of a newer major
    ///   version, truncated, damaged (checksum mismatch) or malformed.
    public static func load(path: String, verify: Bool = true) throws -> CNXModel {
        do {
            let file = try MappedFile(path: path)
            return try FileParser(file: file, verify: verify).parse()
        } catch let e as CNXError {
            throw e.inFile(path)
        }
    }

    /// True when `bytes` begins with the .cnx magic ("CNX\0"): for choosing a reader by content.
    public static func hasMagic<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        bytes.count >= CNXLayout.magic.count && bytes.prefix(CNXLayout.magic.count).elementsEqual(CNXLayout.magic)
    }
}

/// A tensor-table entry, before its bytes are handed out.
private struct TensorEntry {
    var name: String
    var flags: UInt32
    var dtype: DType
    var shape: [Int]
    var offset: Int
    var byteCount: Int
    var crc: UInt32
    /// Where the entry's crc32 field is, for messages.
    var crcFieldOffset: Int
    /// Quantization kind 1: the channel axis and the table indices of the scales and zero points.
    var quantization: (axis: Int, scales: UInt64, zeroPoints: UInt64, at: Int)?
}

private struct FileParser {
    let file: MappedFile
    let verify: Bool

    func parse() throws -> CNXModel {
        let magic = CNXLayout.magic
        guard file.count >= magic.count else {
            throw CNXError("not a .cnx file (\(file.count) bytes, too short for the \(magic.count)-byte magic)")
        }
        // The header is read through the mapping's pointer, inside this scope only; the tensors
        // are `Storage` views of the file, which keep it mapped.
        return try file.withUnsafeBytes { try parse(base: $0.baseAddress!) }
    }

    private func parse(base: UnsafeRawPointer) throws -> CNXModel {
        let size = file.count
        let magic = CNXLayout.magic
        let head = (0..<magic.count).map { base.load(fromByteOffset: $0, as: UInt8.self) }
        guard head == magic else {
            throw CNXError("not a .cnx file (bytes 0..<4 are \(hex(head)), a .cnx file starts with \(hex(magic)))")
        }
        guard size >= 8 else {
            throw CNXError("truncated: the file ends at byte \(size), inside the version field at bytes 4..<8")
        }
        var fixed = ByteCursor(base: base, start: 4, end: min(size, CNXLayout.fixedHeaderSize), section: "fixed header")
        let major = try fixed.u16("version_major")
        let minor = try fixed.u16("version_minor")
        // The major version is checked before any other field: a newer one may lay them out differently.
        guard major <= CNXLayout.versionMajor else {
            throw CNXError(
                "written by a newer convnext-convert (format \(major).\(minor)); this reader understands \(CNXLayout.versionMajor).x")
        }
        guard major == CNXLayout.versionMajor else {
            throw CNXError("format version \(major).\(minor) at byte 4 is not one this reader understands (\(CNXLayout.versionMajor).x)")
        }
        let newerMinor = minor > CNXLayout.versionMinor
        guard size >= CNXLayout.fixedHeaderSize else {
            throw CNXError("truncated: the file has \(size) bytes, the fixed header needs \(CNXLayout.fixedHeaderSize)")
        }
        let storedCRC = try fixed.u32("header_crc32")
        _ = try fixed.u32("flags")  // reserved: ignored by 1.x readers (Formats/CNX.md, Compatibility)
        var sections: [(name: String, label: String, start: Int, length: Int, field: Int)] = []
        for (name, label) in [("metadata", "metadata section"), ("graph", "graph section"), ("tensors", "tensor table")] {
            let field = fixed.offset
            sections.append((name, label, try fixed.size("\(name)_offset"), try fixed.size("\(name)_size"), field))
        }
        let dataOffsetField = fixed.offset
        let dataOffset = try fixed.size("data_offset")
        let dataSize = try fixed.size("data_size")
        guard dataOffset >= CNXLayout.fixedHeaderSize, dataOffset % CNXLayout.alignment == 0 else {
            throw CNXError(
                "fixed header: data_offset \(dataOffset) at byte \(dataOffsetField) is not a multiple of \(CNXLayout.alignment) after the \(CNXLayout.fixedHeaderSize)-byte fixed header"
            )
        }
        guard dataOffset <= Int.max - dataSize else {
            throw CNXError(
                "fixed header: data_offset \(dataOffset) plus data_size \(dataSize) (bytes \(dataOffsetField)..<\(dataOffsetField + 16)) overflows"
            )
        }
        let expectedSize = dataOffset + dataSize
        guard size >= expectedSize else {
            throw CNXError(
                "truncated: the header (bytes \(dataOffsetField)..<\(dataOffsetField + 16)) says the file is \(expectedSize) bytes (data section at bytes \(dataOffset)..<\(expectedSize)), but it has \(size)"
            )
        }
        guard size == expectedSize else {
            throw CNXError("\(size - expectedSize) unexpected bytes after the data section, which ends at byte \(expectedSize)")
        }
        for s in sections {
            guard s.start >= CNXLayout.fixedHeaderSize, s.start <= dataOffset, s.length <= dataOffset - s.start else {
                let end = s.start <= Int.max - s.length ? String(s.start + s.length) : "beyond 2^63"
                throw CNXError(
                    "fixed header: the \(s.name) section at bytes \(s.start)..<\(end) (fields at bytes \(s.field)..<\(s.field + 16)) is not inside the header area, bytes \(CNXLayout.fixedHeaderSize)..<\(dataOffset)"
                )
            }
        }

        // The header checksum, with its own field taken as zero.
        let crcAt = CNXLayout.headerCRCOffset
        var crc = CRC32.update(0, base, crcAt)
        crc = CRC32.update(crc, [UInt8](repeating: 0, count: 4), 4)
        crc = CRC32.update(crc, base + crcAt + 4, dataOffset - crcAt - 4)
        guard crc == storedCRC else {
            throw CNXError(
                "header checksum mismatch: bytes 0..<\(dataOffset) have CRC-32 \(hex32(crc)), but header_crc32 at byte \(crcAt) says \(hex32(storedCRC)); the file is damaged"
            )
        }

        func cursor(_ i: Int) -> ByteCursor {
            ByteCursor(base: base, start: sections[i].start, end: sections[i].start + sections[i].length, section: sections[i].label)
        }
        // The tensor table first: the graph's tensor attributes refer to its entries.
        var tensorCursor = cursor(2)
        let entries = try parseTensorTable(&tensorCursor)
        try tensorCursor.finish(allowTrailing: newerMinor)
        var tensors = try entries.map { try tensor($0, base: base, dataOffset: dataOffset, dataSize: dataSize) }
        // Quantized tensors: their scales (and zero points) are other entries of the table,
        // whose checksums are checked before their values are read.
        for (i, e) in entries.enumerated() {
            guard let q = e.quantization else { continue }
            tensors[i].quantization = try quantization(of: e, q, entries: entries, tensors: tensors, base: base, dataOffset: dataOffset)
        }

        var metadataCursor = cursor(0)
        let metadata = try parseMetadata(&metadataCursor)
        try metadataCursor.finish(allowTrailing: newerMinor)

        var graphCursor = cursor(1)
        var graph = try parseGraph(&graphCursor, tensors: tensors)
        try graphCursor.finish(allowTrailing: newerMinor)
        for (i, e) in entries.enumerated() where e.flags & CNXLayout.initializerFlag != 0 {
            graph.initializers[e.name] = tensors[i]
        }
        // Last, since it reads every byte: a malformed header is reported without that wait.
        if verify {
            let checked = Set(entries.compactMap(\.quantization).flatMap { [$0.scales, $0.zeroPoints] })
            for (i, e) in entries.enumerated() where !checked.contains(UInt64(i)) { try checkCRC(e, base: base, dataOffset: dataOffset) }
        }
        return CNXModel(graph: graph, metadata: metadata)
    }

    /// `struct cnx_tensor_table`.
    private func parseTensorTable(_ c: inout ByteCursor) throws -> [TensorEntry] {
        // name length, flags, dtype, rank, quantization, offset, byte_count, crc32
        let minimumEntry = 8 + 4 + 4 + 4 + CNXLayout.quantizationSize + 8 + 8 + 4
        let count = try c.count("tensor count", minimumEntrySize: minimumEntry)
        var entries: [TensorEntry] = []
        entries.reserveCapacity(count)
        var initializerIndex: [String: Int] = [:]
        for i in 0..<count {
            let name = try c.string("tensor \(i) name")
            let what = "tensor '\(shown(name))'"
            let flagsAt = c.offset
            let flags = try c.u32("\(what) flags")
            guard flags & ~CNXLayout.initializerFlag == 0 else {
                throw c.error("\(what): unknown flags \(hex32(flags)) at byte \(flagsAt)")
            }
            let dtype = try c.dtype(what)
            let rankAt = c.offset
            let rank = try c.u32("\(what) rank")
            guard UInt64(rank) <= UInt64(c.remaining / 8) else {
                throw c.error(
                    "\(what): rank \(rank) at byte \(rankAt) cannot fit: \(c.remaining) bytes remain before the section ends at byte \(c.end)"
                )
            }
            var shape: [Int] = []
            for axis in 0..<Int(rank) {
                let at = c.offset
                let d = try c.i64("\(what) dimension \(axis)")
                guard d >= 0, let v = Int(exactly: d) else {
                    throw c.error("\(what): dimension \(axis) is \(d) at byte \(at)")
                }
                shape.append(v)
            }
            let quantAt = c.offset
            let kindCode = try c.u8("\(what) quantization kind")
            var quantization: (axis: Int, scales: UInt64, zeroPoints: UInt64, at: Int)?
            switch CNXLayout.QuantizationKind(rawValue: kindCode) {
            case .none?:
                _ = try c.take(CNXLayout.quantizationSize - 1, "\(what) quantization parameters")
            case .perChannel?:
                let reserved = [
                    try c.u8("\(what) quantization reserved"), try c.u8("\(what) quantization reserved"),
                    try c.u8("\(what) quantization reserved"),
                ]
                guard reserved.allSatisfy({ $0 == 0 }) else {
                    throw c.error("\(what): reserved quantization bytes at byte \(quantAt + 1) are not zero")
                }
                let axisAt = c.offset
                let axis = try c.i32("\(what) quantization axis")
                guard axis >= 0, Int(axis) < shape.count else {
                    throw c.error("\(what): quantization axis \(axis) at byte \(axisAt) is not an axis of its \(shape.count)-D shape")
                }
                guard dtype == .int8 || dtype == .uint8 else {
                    throw c.error(
                        "\(what): quantization kind 1 at byte \(quantAt) on a \(dtype.name) tensor (only int8 and uint8 are quantized)")
                }
                quantization = (Int(axis), try c.u64("\(what) quantization scales"), try c.u64("\(what) quantization zero_points"), quantAt)
            case nil:
                throw c.error(
                    "\(what): quantization kind \(kindCode) at byte \(quantAt) is not one this reader understands (format \(CNXLayout.versionMajor).\(CNXLayout.versionMinor) knows 0, none, and 1, per channel)"
                )
            }
            let offsetAt = c.offset
            let offset = try c.size("\(what) data offset")
            let byteCountAt = c.offset
            let byteCount = try c.size("\(what) byte_count")
            let crcAt = c.offset
            let crc = try c.u32("\(what) crc32")

            let dims = "[" + shape.map(String.init).joined(separator: ", ") + "]"
            guard let elements = checkedElementCount(shape) else {
                throw c.error("\(what): shape \(dims) at byte \(rankAt) overflows")
            }
            let (needed, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow else { throw c.error("\(what): shape \(dims) of \(dtype.name) at byte \(rankAt) overflows") }
            guard needed == byteCount else {
                throw c.error(
                    "\(what): byte_count \(byteCount) at byte \(byteCountAt) does not match shape \(dims) of \(dtype.name), which needs \(needed)"
                )
            }
            guard offset % CNXLayout.alignment == 0 else {
                throw c.error("\(what): data offset \(offset) at byte \(offsetAt) is not a multiple of \(CNXLayout.alignment)")
            }
            if flags & CNXLayout.initializerFlag != 0 {
                if let earlier = initializerIndex[name] {
                    throw c.error("initializer '\(shown(name))' appears twice (entries \(earlier) and \(i))")
                }
                initializerIndex[name] = i
            }
            entries.append(
                TensorEntry(
                    name: name, flags: flags, dtype: dtype, shape: shape, offset: offset,
                    byteCount: byteCount, crc: crc, crcFieldOffset: crcAt, quantization: quantization))
        }
        return entries
    }

    /// The quantization of entry `e` from the entries its record names: float32 scales, one per
    /// channel, positive and finite; zero points of the tensor's own type, or none (symmetric).
    private func quantization(
        of e: TensorEntry, _ q: (axis: Int, scales: UInt64, zeroPoints: UInt64, at: Int), entries: [TensorEntry],
        tensors: [Tensor], base: UnsafeRawPointer, dataOffset: Int
    ) throws -> Quantization {
        let what = "tensor '\(shown(e.name))'"
        let channels = e.shape[q.axis]
        func entry(_ index: UInt64, _ field: String, dtype: DType) throws -> Int {
            guard index < UInt64(entries.count) else {
                throw CNXError(
                    "tensor table: \(what): quantization \(field) (record at byte \(q.at)) refers to tensor \(index) of \(entries.count)")
            }
            let s = entries[Int(index)]
            guard s.flags & CNXLayout.initializerFlag == 0, s.quantization == nil, s.dtype == dtype, s.shape == [channels] else {
                throw CNXError(
                    "tensor table: \(what): quantization \(field) (record at byte \(q.at)) must be a \(dtype.name) [\(channels)] tensor that is not an initializer, not '\(shown(s.name))' (\(s.dtype.name) \(s.shape))"
                )
            }
            if verify { try checkCRC(s, base: base, dataOffset: dataOffset) }
            return Int(index)
        }
        let scales = try entry(q.scales, "scales", dtype: .float32)
        let values = tensors[scales].withUnsafeBytes { raw in
            (0..<channels).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        }
        guard values.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw CNXError("tensor table: \(what): its quantization scales ('\(shown(entries[scales].name))') must be positive and finite")
        }
        var zeros: [Int32]?
        if q.zeroPoints != CNXLayout.noZeroPoints {
            let z = try entry(q.zeroPoints, "zero_points", dtype: e.dtype)
            zeros = tensors[z].withUnsafeBytes { raw in
                (0..<channels).map { e.dtype == .int8 ? Int32(Int8(bitPattern: raw[$0])) : Int32(raw[$0]) }
            }
        }
        return Quantization(axis: q.axis, scales: values, zeroPoints: zeros)
    }

    /// A tensor borrowing its bytes from the mapping, after checking they lie inside the file.
    private func tensor(_ e: TensorEntry, base: UnsafeRawPointer, dataOffset: Int, dataSize: Int) throws -> Tensor {
        guard e.offset <= dataSize, e.byteCount <= dataSize - e.offset else {
            // Both values fit an Int, so their sum with the data offset can only overflow as UInt64.
            let start = UInt64(dataOffset) + UInt64(e.offset)
            let (end, overflow) = start.addingReportingOverflow(UInt64(e.byteCount))
            throw CNXError(
                "tensor '\(shown(e.name))': data at bytes \(start)..<\(overflow ? "2^64+" : String(end)) runs past the end of the \(file.count)-byte file"
            )
        }
        return Tensor(dtype: e.dtype, shape: e.shape, storage: file.storage(offset: dataOffset + e.offset, byteCount: e.byteCount))
    }

    /// Compares a tensor's bytes with its table entry's CRC-32; bounds were checked by `tensor`.
    private func checkCRC(_ e: TensorEntry, base: UnsafeRawPointer, dataOffset: Int) throws {
        let start = dataOffset + e.offset
        let crc = CRC32.checksum(base + start, e.byteCount)
        guard crc == e.crc else {
            throw CNXError(
                "tensor '\(shown(e.name))': checksum mismatch: its data at bytes \(start)..<\(start + e.byteCount) has CRC-32 \(hex32(crc)), but the tensor table (byte \(e.crcFieldOffset)) says \(hex32(e.crc)); the file is damaged"
            )
        }
    }

    /// `struct cnx_metadata`.
    private func parseMetadata(_ c: inout ByteCursor) throws -> [String: MetadataValue] {
        let names = TypedEntryNames(
            count: "entry count", key: { "entry \($0) key" }, entry: { "entry '\($0)'" }, type: "value type",
            duplicate: { "key '\($1)' at byte \($2) appears twice" })
        // key length, type, smallest value (a bool)
        return try c.typedEntries(names, codes: CNXLayout.MetadataType.self, minimumEntrySize: 8 + 1 + 1) { c, type, what in
            try c.typedValue(type, what)
        }
    }

    /// `struct cnx_graph`; initializers are added by the caller.
    private func parseGraph(_ c: inout ByteCursor, tensors: [Tensor]) throws -> Graph {
        let propertyCount = try c.count("property count", minimumEntrySize: 16)
        var properties: [String: String] = [:]
        for i in 0..<propertyCount {
            let at = c.offset
            let key = try c.string("property \(i) key")
            let value = try c.string("property '\(shown(key))' value")
            guard properties[key] == nil else { throw c.error("property '\(shown(key))' at byte \(at) appears twice") }
            properties[key] = value
        }
        // name length, dtype, rank
        let minimumValueInfo = 8 + 4 + 8
        let inputCount = try c.count("input count", minimumEntrySize: minimumValueInfo)
        let inputs = try (0..<inputCount).map { try valueInfo(&c, what: "input \($0)") }
        let outputCount = try c.count("output count", minimumEntrySize: minimumValueInfo)
        let outputs = try (0..<outputCount).map { try valueInfo(&c, what: "output \($0)") }

        // name, op type, and three counts
        let nodeCount = try c.count("node count", minimumEntrySize: 5 * 8)
        var nodes: [Node] = []
        nodes.reserveCapacity(nodeCount)
        for i in 0..<nodeCount {
            let name = try c.string("node \(i) name")
            let what = "node \(i) ('\(shown(name))')"
            let opAt = c.offset
            let opName = try c.string("\(what) op type")
            guard let op = OpType(rawValue: opName) else {
                throw c.error("\(what): op type '\(shown(opName))' at byte \(opAt) is not one this reader knows")
            }
            let inputCount = try c.count("\(what) input count", minimumEntrySize: 8)
            let inputs = try (0..<inputCount).map { try c.string("\(what) input \($0)") }
            let outputCount = try c.count("\(what) output count", minimumEntrySize: 8)
            let outputs = try (0..<outputCount).map { try c.string("\(what) output \($0)") }
            let names = TypedEntryNames(
                count: "\(what) attribute count", key: { "\(what) attribute \($0) name" }, entry: { "\(what) attribute '\($0)'" },
                type: "attribute type", duplicate: { "\($0) at byte \($2) appears twice" })
            // name length, type, smallest value (a float)
            let attributes = try c.typedEntries(names, codes: CNXLayout.AttributeType.self, minimumEntrySize: 8 + 1 + 4) { c, type, attr in
                try attribute(&c, type, attr, tensors: tensors)
            }
            nodes.append(Node(name: name, op: op, inputs: inputs, outputs: outputs, attributes: attributes))
        }
        return Graph(inputs: inputs, outputs: outputs, nodes: nodes, initializers: [:], metadata: properties)
    }

    /// The value of an attribute of `type`, its type code read.
    private func attribute(_ c: inout ByteCursor, _ type: CNXLayout.AttributeType, _ attr: String, tensors: [Tensor]) throws -> Attribute {
        let at = c.offset
        if let encoding = CNXLayout.AttributeType.encodings[type] {
            guard let decoded = Attribute(decoded: try c.typedValue(encoding, attr)) else {
                throw c.error("\(attr) at byte \(at) holds an integer that does not fit this platform's Int")
            }
            return decoded
        }
        let index = try c.u64("\(attr) tensor index")
        guard index < UInt64(tensors.count) else {
            throw c.error("\(attr): tensor index \(index) at byte \(at) is outside the tensor table's \(tensors.count) entries")
        }
        return .tensor(tensors[Int(index)])
    }

    /// An `int64_t` as an Int (which on a 32-bit platform may not hold it).
    private func int(_ c: inout ByteCursor, _ what: @autoclosure () -> String) throws -> Int {
        let at = c.offset
        let v = try c.i64(what())
        guard let i = Int(exactly: v) else { throw c.error("\(what()) \(v) at byte \(at) does not fit this platform's Int") }
        return i
    }

    /// `struct cnx_value_info`.
    private func valueInfo(_ c: inout ByteCursor, what: String) throws -> ValueInfo {
        let name = try c.string("\(what) name")
        let label = "\(what) ('\(shown(name))')"
        let dtype = try c.dtype(label)
        let rankAt = c.offset
        let rank = try c.i64("\(label) rank")
        if rank == -1 { return ValueInfo(name: name, dtype: dtype, shape: nil) }
        // Each dim takes at least its kind byte.
        guard rank >= 0, rank <= Int64(c.remaining) else {
            throw c.error("\(label): rank \(rank) at byte \(rankAt) is invalid or cannot fit before the section ends at byte \(c.end)")
        }
        var shape: [Dim] = []
        for axis in 0..<Int(rank) {
            let kindAt = c.offset
            let code = try c.u8("\(label) dimension \(axis) kind")
            guard let kind = CNXLayout.DimKind(rawValue: code) else {
                throw c.error("\(label): dimension \(axis) has unknown kind \(code) at byte \(kindAt)")
            }
            switch kind {
            case .fixed:
                let at = c.offset
                let v = try int(&c, "\(label) dimension \(axis)")
                guard v >= 0 else { throw c.error("\(label): dimension \(axis) is \(v) at byte \(at)") }
                shape.append(.fixed(v))
            case .symbolic:
                let symbol = try c.string("\(label) dimension \(axis) symbol")
                let at = c.offset
                let num = try int(&c, "\(label) dimension \(axis) numerator")
                let den = try int(&c, "\(label) dimension \(axis) denominator")
                guard num >= 1, den >= 1 else {
                    throw c.error("\(label): dimension \(axis) factor \(num)/\(den) at byte \(at) is not positive")
                }
                shape.append(.symbolic(name: symbol, num: num, den: den))
            case .unknown:
                shape.append(.unknown)
            }
        }
        return ValueInfo(name: name, dtype: dtype, shape: shape)
    }
}

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02X", $0) }.joined(separator: " ")
}

private func hex32(_ v: UInt32) -> String { String(format: "0x%08X", v) }
