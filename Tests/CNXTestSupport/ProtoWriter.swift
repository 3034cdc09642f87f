/// A minimal protobuf writer, to build ONNX files no exporter would write (field numbers from
/// Formats/onnx.proto).
public struct ProtoWriter {
    public var bytes: [UInt8] = []

    public init() {}

    public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    public mutating func int(_ field: Int, _ v: Int64) { varint(UInt64(field << 3)); varint(UInt64(bitPattern: v)) }
    public mutating func bytes(_ field: Int, _ b: [UInt8]) { varint(UInt64(field << 3 | 2)); varint(UInt64(b.count)); bytes += b }
    public mutating func string(_ field: Int, _ s: String) { bytes(field, Array(s.utf8)) }
    public mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var w = ProtoWriter()
        build(&w)
        bytes(field, w.bytes)
    }

    /// ModelProto's opset_import (field 8): the default domain at `version`.
    public mutating func opsetImport(_ version: Int64) {
        message(8) {
            $0.string(1, ""); $0.int(2, version)
        }
    }

    /// A ValueInfoProto of a float tensor with fixed dimensions, as GraphProto's field `field`
    /// (11: input, 12: output): name, then type.tensor_type with elem_type 1 and shape.dim values.
    public mutating func floatValueInfo(_ field: Int, name: String, dims: [Int64]) {
        message(field) { v in
            v.string(1, name)
            v.message(2) { t in
                t.message(1) { tt in
                    tt.int(1, 1)
                    tt.message(2) { s in for d in dims { s.message(1) { $0.int(1, d) } } }
                }
            }
        }
    }
}
