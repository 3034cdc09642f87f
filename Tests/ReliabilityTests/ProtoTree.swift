import Foundation

/// An ONNX file as a tree of protobuf fields, for the message types the project reads
/// (Formats/onnx.proto), so the hostile tests can cut a nested message short or change a length
/// and write the file back with every enclosing length fixed. The schema has no cycles, so the
/// parse recurses at most as deep as it is (ModelProto, graph, node, attribute, tensor, entry).
final class ProtoField {
    enum Kind { case model, graph, node, attribute, tensor, valueInfo, type, typeTensor, shape, dim, entry, opset, opaque }

    let number: UInt64
    let wire: UInt64
    /// Where the field's key starts in the original file.
    let start: Int
    /// Where the payload of a length-delimited field starts and ends in the original file.
    var payloadRange: Range<Int>
    /// The raw encoding of a varint or fixed-width value, or the payload of a length-delimited one.
    var raw: [UInt8]
    /// The payload parsed as fields, for the sub-messages of a known type; edits go here.
    var children: [ProtoField]?
    var kind: Kind

    init(number: UInt64, wire: UInt64, start: Int, payloadRange: Range<Int>, raw: [UInt8], children: [ProtoField]?, kind: Kind) {
        self.number = number
        self.wire = wire
        self.start = start
        self.payloadRange = payloadRange
        self.raw = raw
        self.children = children
        self.kind = kind
    }

    static func childKind(_ parent: Kind, _ field: UInt64) -> Kind {
        switch (parent, field) {
        case (.model, 7): return .graph
        case (.model, 8): return .opset
        case (.model, 14): return .entry
        case (.graph, 1): return .node
        case (.graph, 5): return .tensor
        case (.graph, 11), (.graph, 12), (.graph, 13): return .valueInfo
        case (.node, 5): return .attribute
        case (.attribute, 5), (.attribute, 10): return .tensor
        case (.tensor, 13): return .entry
        case (.valueInfo, 2): return .type
        case (.type, 1): return .typeTensor
        case (.typeTensor, 2): return .shape
        case (.shape, 1): return .dim
        default: return .opaque
        }
    }

    /// Parses a well-formed file; nil if it is not.
    static func parse(_ bytes: [UInt8]) -> [ProtoField]? {
        parse(bytes, 0..<bytes.count, kind: .model)
    }

    static func varint(_ bytes: [UInt8], _ offset: inout Int, end: Int) -> UInt64? {
        var result: UInt64 = 0, shift: UInt64 = 0
        while offset < end, shift < 64 {
            let b = bytes[offset]
            offset += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
        return nil
    }

    static func parse(_ bytes: [UInt8], _ range: Range<Int>, kind: Kind) -> [ProtoField]? {
        var fields: [ProtoField] = []
        var offset = range.lowerBound
        while offset < range.upperBound {
            let start = offset
            guard let key = varint(bytes, &offset, end: range.upperBound) else { return nil }
            let number = key >> 3, wire = key & 7
            let valueStart = offset
            switch wire {
            case 0:
                guard varint(bytes, &offset, end: range.upperBound) != nil else { return nil }
                fields.append(
                    ProtoField(
                        number: number, wire: wire, start: start, payloadRange: valueStart..<offset,
                        raw: Array(bytes[valueStart..<offset]), children: nil, kind: .opaque))
            case 1, 5:
                offset += wire == 1 ? 8 : 4
                guard offset <= range.upperBound else { return nil }
                fields.append(
                    ProtoField(
                        number: number, wire: wire, start: start, payloadRange: valueStart..<offset,
                        raw: Array(bytes[valueStart..<offset]), children: nil, kind: .opaque))
            case 2:
                guard let length = varint(bytes, &offset, end: range.upperBound),
                    length <= UInt64(range.upperBound - offset)
                else { return nil }
                let payload = offset..<offset + Int(length)
                let childKind = kind == .opaque ? .opaque : childKind(kind, number)
                var children: [ProtoField]?
                if childKind != .opaque {
                    guard let parsed = parse(bytes, payload, kind: childKind) else { return nil }
                    children = parsed
                }
                fields.append(
                    ProtoField(
                        number: number, wire: wire, start: start, payloadRange: payload,
                        raw: Array(bytes[payload]), children: children, kind: childKind))
                offset = payload.upperBound
            default:
                return nil
            }
        }
        return fields
    }

    static func encodeVarint(_ v: UInt64, into out: inout [UInt8]) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    /// The bytes of `fields`, with every length recomputed.
    static func serialize(_ fields: [ProtoField]) -> [UInt8] {
        var out: [UInt8] = []
        for f in fields {
            encodeVarint(f.number << 3 | f.wire, into: &out)
            if f.wire == 2 {
                let payload = f.children.map(serialize) ?? f.raw
                encodeVarint(UInt64(payload.count), into: &out)
                out += payload
            } else {
                out += f.raw
            }
        }
        return out
    }

    /// Every field of every known message, depth first, with its depth (0 for ModelProto's own).
    static func all(_ fields: [ProtoField], depth: Int = 0) -> [(field: ProtoField, depth: Int)] {
        var out: [(ProtoField, Int)] = []
        for f in fields {
            out.append((f, depth))
            if let c = f.children { out += all(c, depth: depth + 1) }
        }
        return out
    }
}
