import CNXGraph
import CZlib
import Foundation

/// One file inside a zip archive, as its central directory describes it.
struct ZipEntry: Sendable {
    let name: String
    /// 0: stored, 8: deflated.
    let method: UInt16
    let flags: UInt16
    let crc32: UInt32
    let compressedSize: Int
    let uncompressedSize: Int
    let localHeaderOffset: Int
    /// Where the entry's bytes start in the file (after its local header).
    let dataOffset: Int
}

/// A read-only zip archive (PKWARE APPNOTE 6.3: end of central directory, zip64 records,
/// central directory, local headers), mapped into memory. Stored entries are never copied;
/// deflated ones are inflated with zlib into exactly the size the directory declares.
///
/// Hostile archives: every offset and size is checked against the file before it is used;
/// entries whose data ranges overlap are refused (the overlapping-entry zip bomb), and so is a
/// deflated entry that claims to inflate to more than deflate can produce from its compressed
/// size (1032:1), so the memory the reader allocates is bounded by what the file size implies.
final class ZipArchive {
    let path: String
    let file: MappedFile
    let entries: [ZipEntry]
    private let index: [String: Int]

    /// Deflate cannot expand data by more than this factor (RFC 1951: 258 bytes per 2-bit code,
    /// about 1032:1 in the limit).
    static let maxDeflateRatio = 1032

    init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        entries = try Self.readDirectory(file)
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() where index[e.name] == nil { index[e.name] = i }
        self.index = index
    }

    func entry(_ name: String) -> ZipEntry? { index[name].map { entries[$0] } }

    // MARK: - Little-endian reads, never past the end

    private static func u16(_ f: MappedFile, _ at: Int) throws -> UInt16 {
        guard at >= 0, at <= f.count - 2 else {
            throw CNXError("truncated at byte \(at): a 2-byte field runs past the end of the \(f.count)-byte file")
        }
        return UInt16(littleEndian: f.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt16.self) })
    }

    private static func u32(_ f: MappedFile, _ at: Int) throws -> UInt32 {
        guard at >= 0, at <= f.count - 4 else {
            throw CNXError("truncated at byte \(at): a 4-byte field runs past the end of the \(f.count)-byte file")
        }
        return UInt32(littleEndian: f.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) })
    }

    private static func u64(_ f: MappedFile, _ at: Int) throws -> Int {
        guard at >= 0, at <= f.count - 8 else {
            throw CNXError("truncated at byte \(at): an 8-byte field runs past the end of the \(f.count)-byte file")
        }
        let v = UInt64(littleEndian: f.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) })
        guard v <= UInt64(Int.max) else { throw CNXError("byte \(at): size or offset \(v) is out of range") }
        return Int(v)
    }

    // MARK: - Directory

    private static func readDirectory(_ f: MappedFile) throws -> [ZipEntry] {
        let count = f.count
        guard count >= 22 else { throw CNXError("not a zip archive: \(count) bytes, smaller than an end-of-central-directory record") }
        // The end-of-central-directory record: 22 bytes plus a comment of at most 65535 bytes.
        var eocd = -1
        var at = count - 22
        let lowest = max(0, count - 22 - 65535)
        while at >= lowest {
            if try u32(f, at) == 0x0605_4b50 { eocd = at; break }
            at -= 1
        }
        guard eocd >= 0 else { throw CNXError("not a zip archive: no end-of-central-directory record in the last \(count - lowest) bytes") }
        var total = Int(try u16(f, eocd + 10))
        var directorySize = Int(try u32(f, eocd + 12))
        var directoryOffset = Int(try u32(f, eocd + 16))
        // Zip64: a locator sits just before the end record and points at the zip64 end record.
        if eocd >= 20, try u32(f, eocd - 20) == 0x0706_4b50 {
            let record = try u64(f, eocd - 20 + 8)
            guard try u32(f, record) == 0x0606_4b50 else {
                throw CNXError(
                    "zip64 end-of-central-directory record expected at byte \(record) (named by the locator at byte \(eocd - 20))")
            }
            total = try u64(f, record + 32)
            directorySize = try u64(f, record + 40)
            directoryOffset = try u64(f, record + 48)
        }
        guard directoryOffset <= count, directorySize <= count - directoryOffset else {
            throw CNXError(
                "central directory at byte \(directoryOffset) (\(directorySize) bytes) runs past the end of the \(count)-byte file")
        }
        guard total <= directorySize / 46 else {
            throw CNXError("central directory at byte \(directoryOffset) claims \(total) entries in \(directorySize) bytes")
        }
        var entries: [ZipEntry] = []
        entries.reserveCapacity(total)
        var p = directoryOffset
        let end = directoryOffset + directorySize
        for _ in 0..<total {
            guard p + 46 <= end, try u32(f, p) == 0x0201_4b50 else {
                throw CNXError("central directory entry expected at byte \(p)")
            }
            let flags = try u16(f, p + 8)
            let method = try u16(f, p + 10)
            let crc = try u32(f, p + 16)
            var compressed = Int(try u32(f, p + 20))
            var uncompressed = Int(try u32(f, p + 24))
            let nameLength = Int(try u16(f, p + 28))
            let extraLength = Int(try u16(f, p + 30))
            let commentLength = Int(try u16(f, p + 32))
            var local = Int(try u32(f, p + 42))
            let next = p + 46 + nameLength + extraLength + commentLength
            guard next <= end, next <= f.count else {
                throw CNXError("central directory entry at byte \(p) runs past the directory's end")
            }
            let name = f.withUnsafeBytes { String(decoding: $0[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self) }
            // Zip64 extended information (header 0x0001) holds the fields that overflowed 32 bits, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = try u16(f, e), size = Int(try u16(f, e + 2))
                guard e + 4 + size <= extraEnd else { throw CNXError("zip entry '\(name)': extra field at byte \(e) runs past its end") }
                if id == 0x0001 {
                    var q = e + 4
                    func next64() throws -> Int {
                        guard q + 8 <= e + 4 + size else { throw CNXError("zip entry '\(name)': zip64 field at byte \(e) is too short") }
                        defer { q += 8 }
                        return try u64(f, q)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if local == 0xFFFF_FFFF { local = try next64() }
                }
                e += 4 + size
            }
            // The local header repeats the name and has its own extra field (torch pads it so
            // that tensor data starts on a 64-byte boundary).
            guard try u32(f, local) == 0x0403_4b50 else {
                throw CNXError("zip entry '\(name)': no local header at byte \(local)")
            }
            let dataOffset = local + 30 + Int(try u16(f, local + 26)) + Int(try u16(f, local + 28))
            guard dataOffset <= directoryOffset, compressed <= directoryOffset - dataOffset else {
                throw CNXError(
                    "zip entry '\(name)': data at byte \(dataOffset) (\(compressed) bytes) runs into the central directory at byte \(directoryOffset)"
                )
            }
            guard flags & 1 == 0 else { throw CNXError("zip entry '\(name)' is encrypted") }
            switch method {
            case 0:
                guard compressed == uncompressed else {
                    throw CNXError("zip entry '\(name)' is stored but its sizes differ (\(compressed) and \(uncompressed) bytes)")
                }
            case 8:
                let (limit, overflow) = compressed.multipliedReportingOverflow(by: maxDeflateRatio)
                guard !overflow, uncompressed <= limit + 64 else {
                    throw CNXError(
                        "zip entry '\(name)' claims to inflate \(compressed) bytes to \(uncompressed): more than deflate can produce; refused (zip bomb)"
                    )
                }
            default:
                break  // refused only if it is read
            }
            entries.append(
                ZipEntry(
                    name: name, method: method, flags: flags, crc32: crc, compressedSize: compressed,
                    uncompressedSize: uncompressed, localHeaderOffset: local, dataOffset: dataOffset))
            p = next
        }
        // No two entries may share bytes: overlapping entries let a small file inflate many times.
        let sorted = entries.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.dataOffset + a.compressedSize > b.localHeaderOffset {
            throw CNXError(
                "zip entries '\(a.name)' (bytes \(a.localHeaderOffset)..<\(a.dataOffset + a.compressedSize)) and '\(b.name)' (from byte \(b.localHeaderOffset)) overlap; refused"
            )
        }
        return entries
    }

    // MARK: - Contents

    /// The bytes of `entry`: a read-only view of the mapping when stored, inflated otherwise (and
    /// then checked against the directory's CRC-32).
    func bytes(_ entry: ZipEntry) throws -> Storage {
        guard file.count > 0 else { throw CNXError("zip entry '\(entry.name)': the archive is empty") }
        switch entry.method {
        case 0:
            return file.storage(offset: entry.dataOffset, byteCount: entry.uncompressedSize)
        case 8:
            let storage = Storage(byteCount: entry.uncompressedSize)
            let crc = try file.withUnsafeBytes { archive in
                try storage.withUnsafeMutableBytes { out in
                    try inflateRaw(
                        from: archive.baseAddress! + entry.dataOffset, count: entry.compressedSize,
                        into: out.baseAddress!, capacity: entry.uncompressedSize, entry: entry)
                    return Self.crc(out.baseAddress!, entry.uncompressedSize)
                }
            }
            guard crc == entry.crc32 else {
                throw CNXError(
                    "zip entry '\(entry.name)' at byte \(entry.dataOffset): CRC-32 \(String(crc, radix: 16)) does not match the directory's \(String(entry.crc32, radix: 16))"
                )
            }
            return storage
        default:
            throw CNXError("zip entry '\(entry.name)' uses compression method \(entry.method); only stored (0) and deflate (8) are read")
        }
    }

    /// CRC-32 (zlib's) of `count` bytes, fed in pieces that fit zlib's 32-bit lengths.
    static func crc(_ p: UnsafeRawPointer, _ count: Int) -> UInt32 {
        var crc: UInt = 0
        var done = 0
        while done < count {
            let n = min(count - done, 1 << 30)
            crc = CZlib.crc32(crc, (p + done).assumingMemoryBound(to: Bytef.self), uInt(n))
            done += n
        }
        return UInt32(truncatingIfNeeded: crc)
    }

    /// Inflates raw deflate data into exactly `capacity` bytes; more or fewer is an error.
    private func inflateRaw(
        from source: UnsafeRawPointer, count: Int, into destination: UnsafeMutableRawPointer,
        capacity: Int, entry: ZipEntry
    ) throws {
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CNXError("zip entry '\(entry.name)': zlib could not start inflating")
        }
        defer { inflateEnd(&stream) }
        // Once the declared size is reached, one byte of spare room tells whether the stream
        // would write more.
        let probe = UnsafeMutablePointer<Bytef>.allocate(capacity: 1)
        defer { probe.deallocate() }
        var consumed = 0, produced = 0
        while true {
            let inChunk = min(count - consumed, 1 << 30)
            stream.next_in = UnsafeMutablePointer(mutating: (source + consumed).assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(inChunk)
            let room = min(capacity - produced, 1 << 30)
            stream.next_out = room > 0 ? (destination + produced).assumingMemoryBound(to: Bytef.self) : probe
            stream.avail_out = uInt(room > 0 ? room : 1)
            let offered = Int(stream.avail_out)
            let status = inflate(&stream, Z_NO_FLUSH)
            consumed += inChunk - Int(stream.avail_in)
            let wrote = offered - Int(stream.avail_out)
            if room == 0 && wrote > 0 {
                throw CNXError(
                    "zip entry '\(entry.name)' at byte \(entry.dataOffset) inflates to more than its declared \(capacity) bytes; refused")
            }
            produced += room > 0 ? wrote : 0
            if status == Z_STREAM_END { break }
            if status == Z_OK { continue }
            if status == Z_BUF_ERROR && consumed == count {
                throw CNXError("zip entry '\(entry.name)' at byte \(entry.dataOffset): deflate data is truncated")
            }
            throw CNXError("zip entry '\(entry.name)' at byte \(entry.dataOffset + consumed): corrupt deflate data (zlib status \(status))")
        }
        guard produced == capacity else {
            throw CNXError(
                "zip entry '\(entry.name)' at byte \(entry.dataOffset) inflates to \(produced) bytes, the directory says \(capacity)")
        }
    }
}
