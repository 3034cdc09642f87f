import Foundation

/// Walks a .cnx file by Formats/CNX.md alone (independently of CNXReader) and records where every
/// field begins, so the hostile tests can cut, edit and re-seal the file at exact places.
struct CNXLayoutWalker {
    struct Section {
        var name: String
        /// Where its offset and size fields are in the fixed header.
        var headerField: Int
        var start: Int
        var size: Int
        /// The start of every field inside the section, in order, and its end.
        var boundaries: [Int] = []
    }

    struct TensorEntry {
        var name: String
        var rankField: Int
        var rank: Int
        var dimsField: Int
        var offsetField: Int
        var byteCountField: Int
        var crcField: Int
        var dataOffset: Int
        var byteCount: Int
    }

    let bytes: [UInt8]
    var sections: [Section] = []
    var tensors: [TensorEntry] = []
    var dataOffset = 0
    var dataSize = 0
    /// Every field boundary of the fixed header (0, 4, 6, 8, ... 96).
    let headerBoundaries = [0, 4, 6, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 96]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        for (i, name) in ["metadata section", "graph section", "tensor table"].enumerated() {
            let field = 16 + 16 * i
            sections.append(Section(name: name, headerField: field, start: Int(bytes.u64(at: field)), size: Int(bytes.u64(at: field + 8))))
        }
        dataOffset = Int(bytes.u64(at: 64))
        dataSize = Int(bytes.u64(at: 72))
        var c = Cursor(bytes: bytes, offset: sections[0].start)
        walkMetadata(&c)
        sections[0].boundaries = c.marks + [c.offset]
        c = Cursor(bytes: bytes, offset: sections[1].start)
        walkGraph(&c)
        sections[1].boundaries = c.marks + [c.offset]
        c = Cursor(bytes: bytes, offset: sections[2].start)
        walkTensorTable(&c)
        sections[2].boundaries = c.marks + [c.offset]
    }

    /// Every boundary in the file: header fields, section fields, tensor data starts and ends.
    var allBoundaries: [Int] {
        var all = Set(headerBoundaries)
        for s in sections { all.formUnion(s.boundaries) }
        for t in tensors { all.insert(dataOffset + t.dataOffset); all.insert(dataOffset + t.dataOffset + t.byteCount) }
        all.insert(dataOffset)
        return all.filter { $0 < bytes.count }.sorted()
    }

    /// Bytes of the data section that no tensor covers (alignment padding).
    func isPadding(_ offset: Int) -> Bool {
        guard offset >= dataOffset else { return false }
        let o = offset - dataOffset
        return !tensors.contains { o >= $0.dataOffset && o < $0.dataOffset + $0.byteCount }
    }

    /// Recomputes the header checksum after an edit, so the reader looks past it.
    static func reseal(_ bytes: inout [UInt8]) {
        guard bytes.count >= 96, let dataOffset = Int(exactly: bytes.u64(at: 64)), dataOffset <= bytes.count else { return }
        bytes.put(0, at: 8, width: 4)
        bytes.put(UInt64(TestCRC32.checksum(bytes[0..<dataOffset])), at: 8, width: 4)
    }

    /// Recomputes a tensor's checksum in its table entry (the header is resealed too).
    static func resealTensor(_ bytes: inout [UInt8], _ t: TensorEntry, dataOffset: Int) {
        let start = dataOffset + t.dataOffset
        let end = min(bytes.count, start + t.byteCount)
        bytes.put(UInt64(TestCRC32.checksum(bytes[min(start, end)..<end])), at: t.crcField, width: 4)
        reseal(&bytes)
    }

    struct Cursor {
        let bytes: [UInt8]
        var offset: Int
        var marks: [Int] = []

        mutating func take(_ n: Int) -> Int {
            marks.append(offset)
            defer { offset += n }
            return offset
        }

        mutating func u8() -> UInt8 { bytes[take(1)] }
        mutating func u32() -> UInt32 { bytes.u32(at: take(4)) }
        mutating func u64() -> UInt64 { bytes.u64(at: take(8)) }
        mutating func i64() -> Int64 { Int64(bitPattern: u64()) }

        mutating func string() -> String {
            let n = Int(u64())
            let at = offset
            offset += n
            return String(decoding: bytes[at..<at + n], as: UTF8.self)
        }
    }

    /// How a typed value is laid out, by the type code before it.
    indirect enum Value {
        case u8, u32, u64, string
        /// `uint64_t n`, then n values.
        case array(Value)
    }

    /// Metadata value types: string, int64, float32, float64, bool, int64 / float32 / string array.
    static let metadataValues: [UInt8: Value] = [
        1: .string, 2: .u64, 3: .u32, 4: .u64, 5: .u8, 6: .array(.u64), 7: .array(.u32), 8: .array(.string),
    ]
    /// Attribute types: float, int, string, tensor (an index), floats, ints.
    static let attributeValues: [UInt8: Value] = [1: .u32, 2: .u64, 3: .string, 4: .u64, 6: .array(.u32), 7: .array(.u64)]

    private func skip(_ c: inout Cursor, _ value: Value) {
        switch value {
        case .u8: _ = c.u8()
        case .u32: _ = c.u32()
        case .u64: _ = c.u64()
        case .string: _ = c.string()
        case .array(let element): for _ in 0..<c.u64() { skip(&c, element) }
        }
    }

    /// A count, then that many entries of a name, a type code and a value of that type (metadata
    /// entries, a node's attributes). False at a type code `types` does not know: the walk ends.
    private func walkTyped(_ c: inout Cursor, _ types: [UInt8: Value]) -> Bool {
        for _ in 0..<c.u64() {
            _ = c.string()
            guard let value = types[c.u8()] else { return false }
            skip(&c, value)
        }
        return true
    }

    private func walkMetadata(_ c: inout Cursor) { _ = walkTyped(&c, Self.metadataValues) }

    private func walkValueInfo(_ c: inout Cursor) {
        _ = c.string()
        _ = c.u32()
        let rank = c.i64()
        guard rank > 0 else { return }
        for _ in 0..<rank {
            switch c.u8() {
            case 1: _ = c.u64()
            case 2:
                _ = c.string()
                _ = c.u64()
                _ = c.u64()
            default: break
            }
        }
    }

    private func walkGraph(_ c: inout Cursor) {
        for _ in 0..<c.u64() {
            _ = c.string()
            _ = c.string()
        }
        for _ in 0..<c.u64() { walkValueInfo(&c) }
        for _ in 0..<c.u64() { walkValueInfo(&c) }
        for _ in 0..<c.u64() {
            _ = c.string()
            _ = c.string()
            for _ in 0..<c.u64() { _ = c.string() }
            for _ in 0..<c.u64() { _ = c.string() }
            guard walkTyped(&c, Self.attributeValues) else { return }
        }
    }

    private mutating func walkTensorTable(_ c: inout Cursor) {
        for _ in 0..<c.u64() {
            let name = c.string()
            _ = c.u32()
            _ = c.u32()
            let rankField = c.offset
            let rank = Int(c.u32())
            let dimsField = c.offset
            for _ in 0..<rank { _ = c.u64() }
            _ = c.take(24)
            let offsetField = c.offset
            let offset = Int(c.u64())
            let byteCountField = c.offset
            let byteCount = Int(c.u64())
            let crcField = c.offset
            _ = c.u32()
            tensors.append(
                TensorEntry(
                    name: name, rankField: rankField, rank: rank, dimsField: dimsField,
                    offsetField: offsetField, byteCountField: byteCountField, crcField: crcField,
                    dataOffset: offset, byteCount: byteCount))
        }
    }
}
