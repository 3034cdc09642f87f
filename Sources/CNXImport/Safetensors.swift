import CNXGraph
import Foundation

/// Reads a `.safetensors` file: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {..}}`),
/// then the data area the offsets count from.
///
/// Everything is checked before any tensor is touched: the header lies inside the file and parses,
/// every tensor's bytes lie inside the data area, no two tensors overlap, the dtype is known and
/// the shape's element count times the element size is the byte length. Float32 and int64 tensors
/// are views of the memory-mapped file (`mapped: true`, so a converter that replaces them can give
/// the pages back); float16 and bfloat16 are widened to float32 copies, int32 to int64.
public enum SafetensorsReader {
    /// The format's own limit on the JSON header (the reference implementation refuses more).
    static let maxHeaderBytes = 100_000_000

    /// Element types this reader accepts, by their safetensors names.
    static let dtypes: [String: DType] = [
        "F32": .float32, "F16": .float16, "BF16": .bfloat16, "F64": .float64, "I64": .int64, "I32": .int32,
    ]

    /// Loads every tensor of `path`; errors name the file, the tensor and the byte offset.
    public static func load(path: String) throws -> StateDict {
        do {
            return try read(MappedFile(path: path))
        } catch let e as CNXError {
            throw oneLine(e.inFile(path))
        }
    }

    /// True when the file's first bytes look like a safetensors header: a plausible length and `{`.
    public static func looksLikeSafetensors(_ head: [UInt8], fileSize: Int) -> Bool {
        guard head.count >= 9 else { return false }
        var n: UInt64 = 0
        for i in stride(from: 7, through: 0, by: -1) { n = n << 8 | UInt64(head[i]) }
        return n >= 2 && n <= UInt64(min(maxHeaderBytes, max(fileSize - 8, 0))) && head[8] == UInt8(ascii: "{")
    }

    private struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let begin: Int
        let end: Int
    }

    static func read(_ file: MappedFile) throws -> StateDict {
        let size = file.count
        guard size >= 8 else {
            throw CNXError("truncated: \(size) bytes; a safetensors file starts with an 8-byte header length")
        }
        let n = UInt64(littleEndian: file.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        guard n <= UInt64(size - 8) else {
            throw CNXError("header length \(n) at byte 0 runs past the end of the \(size)-byte file")
        }
        guard n <= UInt64(maxHeaderBytes) else {
            throw CNXError("header length \(n) at byte 0 is larger than the format's limit of \(maxHeaderBytes) bytes")
        }
        let headerLength = Int(n)
        let dataStart = 8 + headerLength
        let json = file.withUnsafeBytes { Data($0[8..<dataStart]) }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: json)
        } catch {
            throw CNXError("the JSON header (bytes 8..<\(dataStart)) does not parse: \(error.localizedDescription)")
        }
        guard let object = parsed as? [String: Any] else {
            throw CNXError("the JSON header (bytes 8..<\(dataStart)) is not an object")
        }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        let dataSize = size - dataStart
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw CNXError("__metadata__ in the header is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw CNXError("__metadata__ entry '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw CNXError("tensor '\(name)': its header entry is not an object") }
            guard let typeName = info["dtype"] as? String else { throw CNXError("tensor '\(name)': no dtype") }
            guard let dtype = dtypes[typeName] else {
                throw CNXError(
                    "tensor '\(name)': unsupported dtype '\(typeName)' (this reader takes \(dtypes.keys.sorted().joined(separator: ", ")))")
            }
            guard let rawShape = info["shape"] as? [Any] else { throw CNXError("tensor '\(name)': no shape") }
            var shape: [Int] = []
            for d in rawShape {
                guard let v = integer(d), v >= 0 else {
                    throw CNXError("tensor '\(name)': shape \(rawShape) holds something other than non-negative integers")
                }
                shape.append(v)
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                let begin = integer(offsets[0]), let end = integer(offsets[1]), begin >= 0, end >= begin
            else {
                throw CNXError("tensor '\(name)': data_offsets must be two integers [begin, end] with begin <= end")
            }
            guard end <= dataSize else {
                throw CNXError(
                    "tensor '\(name)': data_offsets [\(begin), \(end)] (file bytes \(dataStart + begin)..<\(dataStart + end)) run past the end of the \(size)-byte file"
                )
            }
            guard let count = checkedElementCount(shape), !count.multipliedReportingOverflow(by: dtype.size).overflow else {
                throw CNXError("tensor '\(name)': shape \(shape) overflows")
            }
            guard count * dtype.size == end - begin else {
                throw CNXError(
                    "tensor '\(name)': shape \(shape) of \(typeName) needs \(count * dtype.size) bytes, but data_offsets [\(begin), \(end)] at file byte \(dataStart + begin) hold \(end - begin)"
                )
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for (a, b) in zip(entries, entries.dropFirst()) where b.begin < a.end {
            throw CNXError(
                "tensors '\(a.name)' (file bytes \(dataStart + a.begin)..<\(dataStart + a.end)) and '\(b.name)' (from file byte \(dataStart + b.begin)) overlap"
            )
        }
        var tensors: [String: Tensor] = [:]
        for e in entries {
            tensors[e.name] = tensorFromBytes(
                dtype: e.dtype, shape: e.shape, bytes: file.storage(offset: dataStart + e.begin, byteCount: e.end - e.begin))
        }
        return StateDict(names: entries.map(\.name), tensors: tensors, metadata: metadata)
    }

    /// A JSON number that is an exact integer.
    private static func integer(_ v: Any) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        let i = n.int64Value
        guard Double(i) == n.doubleValue, i >= Int64(Int.min), i <= Int64(Int.max) else { return nil }
        return Int(i)
    }
}
