import CZlib

/// CRC-32 as zlib computes it (Formats/CNX.md, Conventions).
enum CRC32 {
    /// Continues `crc` over `count` bytes at `bytes`; start with 0.
    static func update(_ crc: UInt32, _ bytes: UnsafeRawPointer?, _ count: Int) -> UInt32 {
        guard let bytes, count > 0 else { return crc }
        var crc = UInt(crc)
        var offset = 0
        // zlib takes a 32-bit length; tensors of several GB are fed in slices.
        let slice = 1 << 30
        while offset < count {
            let n = min(slice, count - offset)
            crc = UInt(crc32(uLong(crc), (bytes + offset).assumingMemoryBound(to: Bytef.self), uInt(n)))
            offset += n
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    static func checksum(_ bytes: UnsafeRawPointer?, _ count: Int) -> UInt32 { update(0, bytes, count) }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0.baseAddress, $0.count) }
    }
}
