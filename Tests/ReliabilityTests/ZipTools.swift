import Foundation

/// Reads and writes the plain zip archives `torch.save` makes (no zip64, no comment), so the
/// hostile tests can take a checkpoint apart and put it back together with one entry changed.
struct ZipEntryBytes {
    var name: String
    /// 0 stored, 8 deflated.
    var method: UInt16
    var data: [UInt8]
    var uncompressedSize: UInt32
    var crc: UInt32
}

enum ZipTools {
    static func u16(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
    static func u32(_ b: [UInt8], _ o: Int) -> Int { u16(b, o) | u16(b, o + 2) << 16 }

    /// The entries of an archive, in central-directory order, and the byte offsets of every
    /// structure: local headers, data starts and ends, directory entries, the end record.
    static func read(_ b: [UInt8]) -> (entries: [ZipEntryBytes], boundaries: [Int])? {
        guard b.count >= 22, u32(b, b.count - 22) == 0x0605_4b50 else { return nil }
        let eocd = b.count - 22
        let count = u16(b, eocd + 10), directory = u32(b, eocd + 16)
        var entries: [ZipEntryBytes] = []
        var boundaries = [eocd, directory]
        var p = directory
        for _ in 0..<count {
            guard p + 46 <= b.count, u32(b, p) == 0x0201_4b50 else { return nil }
            boundaries.append(p)
            let method = UInt16(u16(b, p + 10)), crc = UInt32(u32(b, p + 16))
            let compressed = u32(b, p + 20), uncompressed = UInt32(u32(b, p + 24))
            let nameLength = u16(b, p + 28), extra = u16(b, p + 30), comment = u16(b, p + 32)
            let local = u32(b, p + 42)
            let name = String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            let dataStart = local + 30 + u16(b, local + 26) + u16(b, local + 28)
            boundaries += [local, local + 30, dataStart, dataStart + compressed]
            entries.append(
                ZipEntryBytes(
                    name: name, method: method, data: Array(b[dataStart..<(dataStart + compressed)]),
                    uncompressedSize: uncompressed, crc: crc))
            p += 46 + nameLength + extra + comment
        }
        return (entries, boundaries.sorted())
    }

    /// An archive of `entries`, local headers without extra fields.
    static func write(_ entries: [ZipEntryBytes]) -> [UInt8] {
        var out: [UInt8] = [], directory: [UInt8] = []
        func put16(_ v: Int, _ to: inout [UInt8]) { to += [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
        func put32(_ v: Int, _ to: inout [UInt8]) { put16(v & 0xffff, &to); put16(v >> 16 & 0xffff, &to) }
        for e in entries {
            let local = out.count, name = Array(e.name.utf8)
            put32(0x0403_4b50, &out); put16(20, &out); put16(0, &out); put16(Int(e.method), &out)
            put16(0, &out); put16(0, &out); put32(Int(e.crc), &out)
            put32(e.data.count, &out); put32(Int(e.uncompressedSize), &out)
            put16(name.count, &out); put16(0, &out)
            out += name + e.data
            put32(0x0201_4b50, &directory); put16(20, &directory); put16(20, &directory); put16(0, &directory)
            put16(Int(e.method), &directory); put16(0, &directory); put16(0, &directory); put32(Int(e.crc), &directory)
            put32(e.data.count, &directory); put32(Int(e.uncompressedSize), &directory)
            put16(name.count, &directory); put16(0, &directory); put16(0, &directory)
            put16(0, &directory); put16(0, &directory); put32(0, &directory); put32(local, &directory)
            directory += name
        }
        let directoryStart = out.count
        out += directory
        put32(0x0605_4b50, &out); put16(0, &out); put16(0, &out)
        put16(entries.count, &out); put16(entries.count, &out)
        put32(directory.count, &out); put32(directoryStart, &out); put16(0, &out)
        return out
    }

    /// A raw deflate stream (fixed Huffman codes) that inflates to `count` zero bytes: one
    /// literal, then back-references of 258 bytes at distance 1, 13 bits each (about 159:1).
    static func deflatedZeros(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count / 150 + 16)
        var buffer: UInt32 = 0, bits: UInt32 = 0
        func emit(_ value: UInt32, _ n: UInt32) {  // value's low n bits, least significant first
            buffer |= value << bits
            bits += n
            while bits >= 8 {
                out.append(UInt8(buffer & 0xff))
                buffer >>= 8
                bits -= 8
            }
        }
        /// A Huffman code is sent most significant bit first.
        func code(_ c: UInt32, _ n: UInt32) {
            var reversed: UInt32 = 0
            for i in 0..<n where c & (1 << i) != 0 { reversed |= 1 << (n - 1 - i) }
            emit(reversed, n)
        }
        emit(1, 1)  // BFINAL
        emit(1, 2)  // BTYPE 01: fixed codes
        code(0x30, 8)  // literal 0
        var left = count - 1
        while left >= 258 {
            code(0b1100_0101, 8)  // length code 285: 258 bytes
            code(0, 5)  // distance code 0: 1
            left -= 258
        }
        while left > 0 {
            code(0x30, 8)
            left -= 1
        }
        code(0, 7)  // end of block (256)
        if bits > 0 { out.append(UInt8(buffer & 0xff)) }
        return out
    }
}
