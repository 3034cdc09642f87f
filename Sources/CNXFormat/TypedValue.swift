import CNXGraph

/// Metadata values and node attributes share their encodings (Formats/CNX.md): a one-byte type
/// code, then the value, laid out by kind (a string, an `int64_t`, a count and its elements...).
/// Only the code tables differ. Both are written and read here, with `MetadataValue` as the
/// value of every kind but an attribute's tensor index.
extension CNXLayout.AttributeType {
    /// The metadata type whose encoding each attribute type uses; a tensor (an index into the
    /// tensor table) has none.
    static let encodings: [Self: CNXLayout.MetadataType] = [
        .float: .float32, .int: .int64, .string: .string, .floats: .float32Array, .ints: .int64Array,
    ]

    /// The attribute type of a value encoded as `encoding` (the inverse of `encodings`).
    static func of(_ encoding: CNXLayout.MetadataType) -> Self? { encodings.first { $0.value == encoding }?.key }
}

extension ByteWriter {
    /// The type code that `code` gives the value's encoding, then the value.
    mutating func typedValue(_ value: MetadataValue, code: (CNXLayout.MetadataType) -> UInt8) {
        switch value {
        case .string(let v): tagged(code(.string)) { $0.string(v) }
        case .int(let v): tagged(code(.int64)) { $0.i64(v) }
        case .float(let v): tagged(code(.float32)) { $0.f32(v) }
        case .double(let v): tagged(code(.float64)) { $0.f64(v) }
        case .bool(let v): tagged(code(.bool)) { $0.u8(v ? 1 : 0) }
        case .ints(let v): elements(code(.int64Array), v) { $0.i64($1) }
        case .floats(let v): elements(code(.float32Array), v) { $0.f32($1) }
        case .strings(let v): elements(code(.stringArray), v) { $0.string($1) }
        }
    }

    /// A type code, then what `write` writes.
    private mutating func tagged(_ code: UInt8, _ write: (inout ByteWriter) -> Void) {
        u8(code)
        write(&self)
    }

    /// A type code, the element count, then the elements.
    private mutating func elements<T>(_ code: UInt8, _ values: [T], _ write: (inout ByteWriter, T) -> Void) {
        u8(code)
        count(values.count)
        for v in values { write(&self, v) }
    }
}

extension ByteCursor {
    /// A value in `encoding`, the type code already read; `what` names it in messages.
    mutating func typedValue(_ encoding: CNXLayout.MetadataType, _ what: String) throws -> MetadataValue {
        switch encoding {
        case .string: return .string(try string("\(what) value"))
        case .int64: return .int(try i64("\(what) value"))
        case .float32: return .float(try f32("\(what) value"))
        case .float64: return .double(try f64("\(what) value"))
        case .bool:
            let at = offset
            let b = try u8("\(what) value")
            guard b <= 1 else { throw error("\(what): bool value \(b) at byte \(at) is neither 0 nor 1") }
            return .bool(b == 1)
        case .int64Array:
            let n = try count("\(what) element count", minimumEntrySize: 8)
            return .ints(try (0..<n).map { try i64("\(what) element \($0)") })
        case .float32Array:
            let n = try count("\(what) element count", minimumEntrySize: 4)
            return .floats(try (0..<n).map { try f32("\(what) element \($0)") })
        case .stringArray:
            let n = try count("\(what) element count", minimumEntrySize: 8)
            return .strings(try (0..<n).map { try string("\(what) element \($0)") })
        }
    }
}

/// How a list of typed entries (the metadata, a node's attributes) names its parts in messages.
struct TypedEntryNames {
    /// The entry count field.
    let count: String
    /// The key of entry i.
    let key: (Int) -> String
    /// An entry, from its (shown) key.
    let entry: (String) -> String
    /// What an unknown type code is ("value type").
    let type: String
    /// A repeated key: the entry, the shown key, the byte where the entry starts.
    let duplicate: (String, String, Int) -> String
}

extension ByteCursor {
    /// A count, then that many entries, each a key, a `Code` type code and a value that `value`
    /// reads (given the entry's name for messages). An unknown code or a repeated key is refused.
    mutating func typedEntries<Code: RawRepresentable, Value>(
        _ names: TypedEntryNames, codes: Code.Type, minimumEntrySize: Int, value: (inout ByteCursor, Code, String) throws -> Value
    ) throws -> [String: Value] where Code.RawValue == UInt8 {
        let n = try count(names.count, minimumEntrySize: minimumEntrySize)
        var entries: [String: Value] = [:]
        for i in 0..<n {
            let keyAt = offset
            let key = try string(names.key(i))
            let what = names.entry(shown(key))
            let typeAt = offset
            let code = try u8("\(what) type")
            guard let type = Code(rawValue: code) else { throw error("\(what): unknown \(names.type) \(code) at byte \(typeAt)") }
            let v = try value(&self, type, what)
            guard entries[key] == nil else { throw error(names.duplicate(what, shown(key), keyAt)) }
            entries[key] = v
        }
        return entries
    }
}

extension Attribute {
    /// The value as its encoding holds it (nil for a tensor, which is written as an index).
    var encoded: MetadataValue? {
        switch self {
        case .float(let v): return .float(v)
        case .int(let v): return .int(Int64(v))
        case .string(let v): return .string(v)
        case .floats(let v): return .floats(v)
        case .ints(let v): return .ints(v.map(Int64.init))
        case .tensor: return nil
        }
    }

    /// The attribute an encoded value read back stands for; nil when an integer does not fit
    /// this platform's Int.
    init?(decoded value: MetadataValue) {
        switch value {
        case .float(let v): self = .float(v)
        case .string(let v): self = .string(v)
        case .floats(let v): self = .floats(v)
        case .int(let v):
            guard let i = Int(exactly: v) else { return nil }
            self = .int(i)
        case .ints(let v):
            let ints = v.compactMap { Int(exactly: $0) }
            guard ints.count == v.count else { return nil }
            self = .ints(ints)
        case .double, .bool, .strings:
            preconditionFailure("no attribute type is encoded as \(value)")
        }
    }
}
