import CHash
import CNXGraph
import Foundation

/// Writes numpy's `.npz` layout: a zip archive (stored, not compressed) holding one `.npy`
/// per array, named `<name>.npy`; `numpy.load` returns them by name.
public enum NPZ {
    public static func encode(_ arrays: [(name: String, tensor: Tensor)]) -> Data {
        var out = Data()
        var central = Data()
        func le16(_ v: Int, _ d: inout Data) { d.append(contentsOf: [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)]) }
        func le32(_ v: UInt32, _ d: inout Data) { for i in 0..<4 { d.append(UInt8((v >> (8 * UInt32(i))) & 0xff)) } }
        for (name, tensor) in arrays {
            let file = Array((name + ".npy").utf8)
            let body = NPY.encode(tensor)
            let crc = body.withUnsafeBytes { $0.isEmpty ? 0 : cnx_crc32(0, $0.baseAddress, $0.count) }
            let offset = UInt32(out.count)
            // Local file header: version 2.0, no flags, stored, no timestamps (deterministic).
            le32(0x04034b50, &out); le16(20, &out); le16(0, &out); le16(0, &out); le16(0, &out); le16(0x21, &out)
            le32(crc, &out); le32(UInt32(body.count), &out); le32(UInt32(body.count), &out)
            le16(file.count, &out); le16(0, &out)
            out.append(contentsOf: file)
            out.append(body)
            le32(0x02014b50, &central); le16(20, &central); le16(20, &central); le16(0, &central); le16(0, &central)
            le16(0, &central); le16(0x21, &central)
            le32(crc, &central); le32(UInt32(body.count), &central); le32(UInt32(body.count), &central)
            le16(file.count, &central); le16(0, &central); le16(0, &central); le16(0, &central); le16(0, &central)
            le32(0, &central); le32(offset, &central)
            central.append(contentsOf: file)
        }
        let centralOffset = UInt32(out.count)
        out.append(central)
        le32(0x06054b50, &out); le16(0, &out); le16(0, &out); le16(arrays.count, &out); le16(arrays.count, &out)
        le32(UInt32(central.count), &out); le32(centralOffset, &out); le16(0, &out)
        return out
    }

    /// Writes atomically, like every output of the tool.
    public static func write(_ arrays: [(name: String, tensor: Tensor)], path: String) throws {
        try AtomicFile.write(encode(arrays), to: path)
    }
}

extension NPZ {
    /// Reads an `.npz` whose entries are stored (numpy's `savez`, and this tool's own files),
    /// returning the arrays by name, in archive order. Every header field is checked against
    /// the file's size; compressed entries (`savez_compressed`) are refused with a message.
    public static func read(path: String) throws -> [(name: String, tensor: Tensor)] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) } catch {
            throw CNXError("\(path): cannot read (\(error.localizedDescription))")
        }
        let bytes = [UInt8](data)
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        var arrays: [(name: String, tensor: Tensor)] = []
        var offset = 0
        while offset + 4 <= bytes.count, u32(offset) == 0x04034b50 {
            guard offset + 30 <= bytes.count else { throw CNXError("\(path): truncated zip header at byte \(offset)") }
            let method = u16(offset + 8), size = u32(offset + 18), nameLength = u16(offset + 26), extra = u16(offset + 28)
            guard method == 0 else {
                throw CNXError("\(path): entry at byte \(offset) is compressed; save with numpy.savez, not savez_compressed")
            }
            let start = offset + 30 + nameLength + extra
            guard start <= bytes.count, size <= bytes.count - start else {
                throw CNXError("\(path): entry at byte \(offset) claims \(size) bytes past the end of the file")
            }
            var name = String(decoding: bytes[(offset + 30)..<(offset + 30 + nameLength)], as: UTF8.self)
            if name.hasSuffix(".npy") { name.removeLast(4) }
            do {
                arrays.append((name, try NPY.parse(data.subdata(in: start..<(start + size)))))
            } catch let e as CNXError {
                throw CNXError("\(path): entry '\(name)': \(e.message)")
            }
            offset = start + size
        }
        guard !arrays.isEmpty else { throw CNXError("\(path): not an .npz (no zip entries at byte 0)") }
        return arrays
    }
}
