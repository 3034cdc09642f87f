import CHash

/// CRC-32 as zlib computes it (Formats/CNX.md, Conventions), in plain C (Sources/CHash).
enum CRC32 {
    /// Continues `crc` over `count` bytes at `bytes`; start with 0.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawPointer?, _ count: Int) -> UInt32 {
        guard let bytes, count > 0 else { return crc }
        return cnx_crc32(crc, bytes, count)
    }

    static func checksum(_ bytes: UnsafeRawPointer?, _ count: Int) -> UInt32 { update(0, bytes, count) }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0.baseAddress, $0.count) }
    }
}
