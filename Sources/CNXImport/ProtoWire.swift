import CNXGraph

/// A walk over protobuf wire format that checks every field's tag and length against the bytes
/// that remain, so that a truncated or corrupt ONNX file is reported with the byte offset of the
/// first field that does not fit (protobuf-c only says "failed"). It descends into every message
/// of Formats/onnx.proto (which has no recursion, so neither has the walk); unknown fields are skipped.
struct ProtoWireChecker {
    let bytes: UnsafeRawBufferPointer

    /// Message kinds, for choosing which length-delimited fields hold sub-messages.
    enum Kind { case model, graph, node, attribute, tensor, valueInfo, type, typeTensor, shape, leaf }

    /// The sub-message a field holds (its kind and name), or nil for scalars, bytes and unknown fields.
    static func child(of kind: Kind, field: UInt64) -> (kind: Kind, name: String)? {
        switch (kind, field) {
        case (.model, 7): return (.graph, "GraphProto")
        case (.model, 8): return (.leaf, "OperatorSetIdProto")
        case (.model, 14), (.tensor, 13): return (.leaf, "StringStringEntryProto")
        case (.graph, 1): return (.node, "NodeProto")
        case (.graph, 5), (.attribute, 5), (.attribute, 10): return (.tensor, "TensorProto")
        case (.graph, 11), (.graph, 12), (.graph, 13): return (.valueInfo, "ValueInfoProto")
        case (.node, 5): return (.attribute, "AttributeProto")
        case (.valueInfo, 2): return (.type, "TypeProto")
        case (.type, 1): return (.typeTensor, "TypeProto.Tensor")
        case (.typeTensor, 2): return (.shape, "TensorShapeProto")
        case (.shape, 1): return (.leaf, "TensorShapeProto.Dimension")
        default: return nil
        }
    }

    func check() throws {
        try walk(from: 0, to: bytes.count, kind: .model, path: "ModelProto")
    }

    private func varint(at offset: inout Int, end: Int, path: String) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while true {
            guard offset < end else {
                throw CNXError("truncated varint at byte \(start) in \(path)")
            }
            let b = bytes[offset]
            offset += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            guard shift < 64 else { throw CNXError("malformed varint at byte \(start) in \(path)") }
        }
    }

    private func walk(from start: Int, to end: Int, kind: Kind, path: String) throws {
        var offset = start
        while offset < end {
            let fieldStart = offset
            let key = try varint(at: &offset, end: end, path: path)
            let field = key >> 3, wire = key & 7
            guard field != 0 else {
                throw CNXError("invalid protobuf field number 0 at byte \(fieldStart) in \(path): not an ONNX model")
            }
            let child = ProtoWireChecker.child(of: kind, field: field)
            if let child, wire != 2 {
                throw CNXError("field \(field) of \(path) at byte \(fieldStart) has wire type \(wire), but holds a \(child.name)")
            }
            switch wire {
            case 0:
                _ = try varint(at: &offset, end: end, path: path)
            case 1, 5:
                let size = wire == 1 ? 8 : 4
                guard end - offset >= size else {
                    throw CNXError("truncated: field \(field) of \(path) at byte \(fieldStart) needs \(size) bytes, \(end - offset) remain")
                }
                offset += size
            case 2:
                let length = try varint(at: &offset, end: end, path: path)
                guard length <= UInt64(end - offset) else {
                    throw CNXError(
                        "truncated: field \(field) of \(path) at byte \(fieldStart) claims \(length) bytes, \(end - offset) remain")
                }
                let sub = offset, subEnd = offset + Int(length)
                if let child { try walk(from: sub, to: subEnd, kind: child.kind, path: "\(child.name) at byte \(sub)") }
                offset = subEnd
            default:
                throw CNXError("invalid protobuf wire type \(wire) at byte \(fieldStart) in \(path): not an ONNX model")
            }
        }
    }
}

/// Splits the bulk of an ONNX file from its structure: a copy of the ModelProto in which every
/// initializer's `raw_data` (TensorProto field 9) is left out, and where each one was in the
/// file. protobuf-c then parses only the small structural part (it copies every bytes field it
/// reads), and the weights are read straight from the mapped file, once.
struct InitializerStripper {
    let bytes: UnsafeRawBufferPointer

    /// The stripped ModelProto and, for each initializer in order, the byte range of its
    /// raw_data in the file (nil when it has none). Call after `ProtoWireChecker.check()`.
    func strip() -> (model: [UInt8], raw: [Range<Int>?]) {
        var raw: [Range<Int>?] = []
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        var offset = 0
        while offset < bytes.count {
            let field = readField(&offset)
            if field.number == 7 && field.wire == 2 {
                let graph = stripGraph(field.payload, &raw)
                append(key: field.key, payload: graph, to: &out)
            } else {
                out.append(contentsOf: bytes[field.start..<field.end])
            }
        }
        return (out, raw)
    }

    private struct Field {
        var start: Int, end: Int, key: UInt64, number: UInt64, wire: UInt64
        var payload: Range<Int>
    }

    private func varint(_ offset: inout Int) -> UInt64 {
        var result: UInt64 = 0, shift: UInt64 = 0
        while offset < bytes.count {
            let b = bytes[offset]
            offset += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        return result
    }

    /// One field at `offset` (already validated by the checker), advancing past it.
    private func readField(_ offset: inout Int) -> Field {
        let start = offset
        let key = varint(&offset)
        let wire = key & 7
        var payload = offset..<offset
        switch wire {
        case 0: _ = varint(&offset)
        case 1: offset += 8
        case 5: offset += 4
        default:
            let length = Int(varint(&offset))
            payload = offset..<offset + length
            offset += length
        }
        return Field(start: start, end: offset, key: key, number: key >> 3, wire: wire, payload: payload)
    }

    private func append(key: UInt64, payload: [UInt8], to out: inout [UInt8]) {
        func put(_ v: UInt64) {
            var v = v
            while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        put(key)
        put(UInt64(payload.count))
        out.append(contentsOf: payload)
    }

    private func stripGraph(_ range: Range<Int>, _ raw: inout [Range<Int>?]) -> [UInt8] {
        var out: [UInt8] = []
        var offset = range.lowerBound
        while offset < range.upperBound {
            let field = readField(&offset)
            guard field.number == 5 && field.wire == 2 else {
                out.append(contentsOf: bytes[field.start..<field.end])
                continue
            }
            var tensor: [UInt8] = []
            var data: Range<Int>?
            var inner = field.payload.lowerBound
            while inner < field.payload.upperBound {
                let f = readField(&inner)
                if f.number == 9 && f.wire == 2 { data = f.payload } else { tensor.append(contentsOf: bytes[f.start..<f.end]) }
            }
            raw.append(data)
            append(key: field.key, payload: tensor, to: &out)
        }
        return out
    }
}
