/// Makes a mutated .cnx file's fixed header consistent again, so that mutations reach the
/// sections behind it: `data_size` is set to what the file's length implies and `header_crc32`
/// is recomputed (Formats/CNX.md: fixed header fields at bytes 8, 64 and 72, little-endian).
/// Tensor checksums are left alone; the target then loads without verifying them.
public enum CNXChecksums {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// zlib's CRC-32.
    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func u64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    static func put(_ value: UInt64, _ count: Int, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<count { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    public static func repair(_ bytes: inout [UInt8]) {
        guard bytes.count >= 96 else { return }
        let dataOffset = u64(bytes, at: 64)
        guard dataOffset >= 96, dataOffset <= UInt64(bytes.count) else { return }
        put(UInt64(bytes.count) - dataOffset, 8, into: &bytes, at: 72)
        put(0, 4, into: &bytes, at: 8)
        let crc = crc32(bytes[0..<Int(dataOffset)])
        put(UInt64(crc), 4, into: &bytes, at: 8)
    }
}
