// The .cnx reader and writer (Formats/CNX.md): the constants both sides share.
import CNXGraph

/// Numbers fixed by Formats/CNX.md, shared by the reader and the writer so they cannot drift apart.
enum CNXLayout {
    /// "CNX\0": bytes 0..<4 of every .cnx file.
    static let magic: [UInt8] = [0x43, 0x4E, 0x58, 0x00]
    /// The version this code writes; it reads every 1.x.
    static let versionMajor: UInt16 = 1
    static let versionMinor: UInt16 = 0
    /// Size of `cnx_file_header`.
    static let fixedHeaderSize = 96
    /// Byte offset of `header_crc32`, taken as zero when the header checksum is computed.
    static let headerCRCOffset = 8
    /// Alignment of the data section and of every tensor in it.
    static let alignment = 64
    /// Size of `cnx_quantization` in a tensor-table entry.
    static let quantizationSize = 24
    /// `cnx_tensor_info.flags` bit 0: the tensor is a graph initializer.
    static let initializerFlag: UInt32 = 1

    /// `enum cnx_metadata_type`.
    enum MetadataType: UInt8 {
        case string = 1, int64 = 2, float32 = 3, float64 = 4, bool = 5
        case int64Array = 6, float32Array = 7, stringArray = 8
    }

    /// `enum cnx_dim_kind`.
    enum DimKind: UInt8 {
        case fixed = 1, symbolic = 2, unknown = 3
    }

    /// `enum cnx_attribute_type`: ONNX's AttributeProto.AttributeType numbers.
    enum AttributeType: UInt8 {
        case float = 1, int = 2, string = 3, tensor = 4, floats = 6, ints = 7
    }

    /// `enum cnx_quantization_kind`.
    enum QuantizationKind: UInt8 {
        case none = 0
    }

    /// `value` rounded up to a multiple of the alignment, or nil on overflow.
    static func aligned(_ value: Int) -> Int? {
        let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
        return overflow ? nil : sum / alignment * alignment
    }
}

/// Sorting by the bytes of the UTF-8 encoding, the order the format defines: Swift's own String
/// order follows Unicode canonical equivalence, which is not a byte order.
func utf8Precedes(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}

/// A string read from a file, fit for a one-line message: control characters escaped and long
/// strings cut, since a damaged file can put anything in a name.
func shown(_ s: String) -> String {
    let scalars = s.unicodeScalars
    guard scalars.count > 120 else { return s.escapingControlCharacters }
    return String(String.UnicodeScalarView(scalars.prefix(120))).escapingControlCharacters + "…"
}
