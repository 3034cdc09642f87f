import CHash
import CNXGraph
import Foundation

/// SHA-256 (FIPS 180-4), for the source file's fingerprint in a `.cnx`'s metadata.
public enum SHA256 {
    /// Incremental hashing, so large files can be hashed as they are read.
    public struct Hasher {
        private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        private var pending: [UInt8] = []
        private var length: UInt64 = 0

        public init() {}

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            length &+= UInt64(bytes.count)
            var offset = 0
            if !pending.isEmpty {
                let take = min(64 - pending.count, bytes.count)
                pending += bytes[0..<take]
                offset = take
                if pending.count == 64 {
                    pending.withUnsafeBytes { block(UnsafeRawBufferPointer(rebasing: $0[0..<64])) }
                    pending.removeAll(keepingCapacity: true)
                }
            }
            let whole = (bytes.count - offset) / 64 * 64
            if whole > 0 {
                block(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + whole]))
                offset += whole
            }
            if offset < bytes.count { pending += bytes[offset...] }
        }

        /// The compression function over whole 64-byte blocks, in C (SHA extensions when present).
        private mutating func block(_ p: UnsafeRawBufferPointer) {
            let blocks = p.count / 64
            guard blocks > 0, let base = p.baseAddress else { return }
            h.withUnsafeMutableBufferPointer { state in
                cnx_sha256_blocks(state.baseAddress!, base.assumingMemoryBound(to: UInt8.self), blocks)
            }
        }

        public mutating func finalize() -> String {
            var tail = pending
            tail.append(0x80)
            while tail.count % 64 != 56 { tail.append(0) }
            let bits = length &* 8
            for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
            pending.removeAll()
            tail.withUnsafeBytes { raw in
                for o in stride(from: 0, to: raw.count, by: 64) { block(UnsafeRawBufferPointer(rebasing: raw[o..<o + 64])) }
            }
            return h.map { String(format: "%08x", $0) }.joined()
        }
    }

    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var hasher = Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// The SHA-256 of a file, read in chunks (not mapped: the pages stay in the page cache and
    /// out of this process's memory).
    public static func hex(path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CNXError("\(path): cannot open") }
        defer { try? handle.close() }
        var hasher = Hasher()
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: 1 << 22) ?? Data() } catch {
                throw CNXError("\(path): cannot read (\(error.localizedDescription))")
            }
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { hasher.update($0) }
        }
        return hasher.finalize()
    }
}
