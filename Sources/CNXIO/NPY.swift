import CNXGraph
import Foundation

/// Reads and writes numpy's `.npy` format (version 1.0 to 3.0): float32, float64 (read as
/// float32), int64 and int32 (read as int64), little-endian, C order.
public enum NPY {
    public static func read(path: String) throws -> Tensor {
        // Mapped by MappedFile, not Data(contentsOf:), which leaks 4 KB per empty file (found by Fuzz/FuzzNPY).
        let file = try MappedFile(path: path)
        do {
            // A Data over the mapping that lives only inside the closure (parse copies what it keeps).
            return try file.withUnsafeBytes { raw in
                let data = raw.baseAddress.map {
                    Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0), count: raw.count, deallocator: .none)
                }
                return try parse(data ?? Data())
            }
        } catch let e as CNXError {
            throw e.inFile(path).escapingControlCharacters
        }
    }

    public static func parse(_ data: Data) throws -> Tensor {
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw CNXError("not a .npy file (bad magic at byte 0)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw CNXError("truncated header at byte 8") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw CNXError("unsupported .npy version \(major) at byte 6")
        }
        guard headerLength <= data.count - headerStart else {
            throw CNXError("truncated: header claims \(headerLength) bytes at byte \(headerStart), file has \(data.count)")
        }
        let headerBytes = data.subdata(in: data.startIndex + headerStart..<data.startIndex + headerStart + headerLength)
        guard let header = String(data: headerBytes, encoding: .utf8) ?? String(data: headerBytes, encoding: .isoLatin1) else {
            throw CNXError("unreadable header at byte \(headerStart)")
        }
        guard let descr = field(header, "descr") else { throw CNXError("header has no 'descr'") }
        let fortran = field(header, "fortran_order") ?? "False"
        guard fortran.hasPrefix("False") else { throw CNXError("Fortran-ordered arrays are not supported") }
        guard let shapeText = field(header, "shape") else { throw CNXError("header has no 'shape'") }
        let inner = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw CNXError("invalid shape \(shapeText)") }
            shape.append(v)
        }
        guard let count = checkedElementCount(shape) else { throw CNXError("shape \(shape) overflows") }
        let descriptor = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\" "))
        let width: Int
        switch descriptor {
        case "<f4", "<i4": width = 4
        case "<f8", "<i8": width = 8
        default: throw CNXError("unsupported dtype \(descriptor) (float32, float64, int32, int64 little-endian only)")
        }
        let start = headerStart + headerLength
        let (needed, overflow) = count.multipliedReportingOverflow(by: width)
        guard !overflow, needed <= data.count - start else {
            throw CNXError(
                "truncated: shape \(shape) of \(descriptor) needs \(needed) bytes after byte \(start), \(data.count - start) remain")
        }
        return data.withUnsafeBytes { raw -> Tensor in
            let p = raw.baseAddress! + start
            switch descriptor {
            case "<f4":
                let t = Tensor(zeros: .float32, shape: shape)
                t.withUnsafeMutableElementBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: needed)) }
                return t
            case "<f8":
                let t = Tensor(zeros: .float32, shape: shape)
                t.withUnsafeMutableFloats { dst in
                    for i in 0..<count { dst[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
                }
                return t
            case "<i8":
                let t = Tensor(zeros: .int64, shape: shape)
                t.withUnsafeMutableElementBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: p, count: needed)) }
                return t
            default:
                let t = Tensor(zeros: .int64, shape: shape)
                t.withUnsafeMutableInt64s { dst in
                    for i in 0..<count { dst[i] = Int64(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
                }
                return t
            }
        }
    }

    /// The value text of `key` in a numpy header dictionary.
    private static func field(_ header: String, _ key: String) -> String? {
        for quote in ["'", "\""] {
            guard let r = header.range(of: "\(quote)\(key)\(quote)") else { continue }
            var rest = header[r.upperBound...].drop { $0 == " " || $0 == ":" }
            if rest.first == "(" {
                guard let close = rest.firstIndex(of: ")") else { return nil }
                return String(rest[...close])
            }
            if let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) { rest = rest[..<end] }
            return String(rest).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// The bytes of a `.npy` (version 1.0) holding `tensor` (float32 or int64).
    public static func encode(_ tensor: Tensor) -> Data {
        let descr = tensor.dtype == .int64 ? "<i8" : "<f4"
        let shapeText =
            tensor.shape.isEmpty
            ? "()" : tensor.shape.count == 1 ? "(\(tensor.shape[0]),)" : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let n = header.utf8.count
        data.append(contentsOf: [UInt8(n & 0xff), UInt8(n >> 8)])
        data.append(contentsOf: Array(header.utf8))
        tensor.withUnsafeBytes { data.append($0.assumingMemoryBound(to: UInt8.self)) }
        return data
    }

    /// Writes atomically: a temporary file beside `path`, renamed into place.
    public static func write(_ tensor: Tensor, path: String) throws {
        try AtomicFile.write(encode(tensor), to: path)
    }
}

/// Writing through a temporary file and a rename, so a reader never sees half a file.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        // Removed by the signal handler if SIGINT or SIGTERM cuts the write short.
        let registration = InterruptCleanup.register(tmp.path)
        defer { InterruptCleanup.unregister(registration) }
        do {
            try data.write(to: tmp)
            guard rename(tmp.path, url.path) == 0 else {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(at: tmp)
                throw CNXError("\(path): cannot write (\(reason))")
            }
        } catch let e as CNXError {
            throw e
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw CNXError("\(path): cannot write (\(error.localizedDescription))")
        }
    }
}
