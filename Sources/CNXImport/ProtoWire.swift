import CNXGraph

/// A walk over protobuf wire format that checks every field's tag and length against the bytes
/// that remain, so that a truncated or corrupt ONNX file is reported with the byte offset of the
/// first field that does not fit (protobuf-c only says "failed"). It descends into the messages
/// whose layout it knows: the model, its graph, and the graph's nodes, tensors and value infos.
struct ProtoWireChecker {
    let bytes: UnsafeRawBufferPointer

    /// Field numbers of length-delimited sub-messages to descend into, per message kind.
    enum Kind { case model, graph, leaf }

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
                    throw CNXError("truncated: field \(field) of \(path) at byte \(fieldStart) claims \(length) bytes, \(end - offset) remain")
                }
                let sub = offset, subEnd = offset + Int(length)
                switch (kind, field) {
                case (.model, 7): try walk(from: sub, to: subEnd, kind: .graph, path: "GraphProto")
                case (.graph, 1): try walk(from: sub, to: subEnd, kind: .leaf, path: "NodeProto at byte \(sub)")
                case (.graph, 5): try walk(from: sub, to: subEnd, kind: .leaf, path: "TensorProto at byte \(sub)")
                default: break
                }
                offset = subEnd
            default:
                throw CNXError("invalid protobuf wire type \(wire) at byte \(fieldStart) in \(path): not an ONNX model")
            }
        }
    }
}
