import CNXGraph
import CNXIO
import Foundation

/// Writes a `CNXModel` as a .cnx file (Formats/CNX.md).
///
/// The output is deterministic: metadata keys, initializers and attributes are sorted by their
/// UTF-8 bytes, nodes keep the graph's order, padding and reserved fields are zero, and nothing
/// depends on the time or the machine. The same model always gives the same bytes.
public enum CNXWriter {
    /// The bytes of the .cnx file for `model`, built in memory.
    ///
    /// - Throws: `CNXError` when the model cannot be represented (a tensor whose storage is
    ///   smaller than its shape, a negative dimension).
    public static func encode(_ model: CNXModel) throws -> Data {
        let plan = try Plan(model)
        var data = Data(capacity: plan.header.count + plan.dataSize)
        data.append(contentsOf: plan.header)
        var position = 0
        for t in plan.tensors {
            data.append(Data(count: t.offset - position))
            t.tensor.withUnsafeBytes { data.append($0.assumingMemoryBound(to: UInt8.self)) }
            position = t.offset + t.byteCount
        }
        return data
    }

    /// Writes `model` to `path` atomically: the bytes go to a temporary file beside `path`, which
    /// is flushed to disk and then renamed over `path`. On any error the temporary file is
    /// removed and `path` is untouched (absent, or the file that was there before).
    ///
    /// The header is built in memory; tensor bytes are streamed from their storage, so a model of
    /// hundreds of MB is never copied into one buffer. SIGINT or SIGTERM during the write removes
    /// the temporary file (`InterruptCleanup`).
    ///
    /// Test points (`InterruptCleanup.testPoint`, enabled by `CNX_TEST_PAUSE_AT`): `write.header`
    /// once the header is in the temporary file, `write.tensor.N` once tensor N (from 0, in table
    /// order) is, so a test can stop the write at a known place and signal it.
    ///
    /// - Throws: `CNXError` naming `path` (and the tensor, where one is at fault).
    public static func write(_ model: CNXModel, to path: String) throws {
        // Everything that can be wrong with the model is found before a file exists.
        let plan: Plan
        do { plan = try Plan(model) } catch let e as CNXError { throw e.inFile(path) }
        let output = try AtomicOutput(path: path)
        do {
            try output.write(plan.header)
            InterruptCleanup.testPoint("write.header")
            var position = 0
            for (i, t) in plan.tensors.enumerated() {
                try output.writeZeros(t.offset - position)
                try t.tensor.withUnsafeBytes { try output.write($0, what: "tensor '\(t.name)'") }
                position = t.offset + t.byteCount
                InterruptCleanup.testPoint("write.tensor.\(i)")
            }
            try output.commit()
        } catch {
            output.abandon()
            throw error
        }
    }
}

/// A tensor's place in the file.
struct PlannedTensor {
    var name: String
    var tensor: Tensor
    var flags: UInt32
    /// Kind 1: the table indices of the scales and (nil: symmetric) zero points.
    var quantization: (axis: Int, scales: Int, zeroPoints: Int?)?
    var byteCount: Int
    /// From the start of the data section.
    var offset: Int
    var crc: UInt32
}

/// The whole file except the tensor bytes: the header (fixed header, three sections, padding,
/// checksum filled in) and where each tensor goes in the data section.
struct Plan {
    var header: [UInt8] = []
    var tensors: [PlannedTensor] = []
    var dataSize = 0

    init(_ model: CNXModel) throws {
        let graph = model.graph
        // Tensor table order: initializers by name, then attribute tensors as the graph section
        // meets them. `attributeIndex[node][attribute]` is the index an attribute refers to.
        var attributeIndex: [[String: Int]] = Array(repeating: [:], count: graph.nodes.count)
        for name in graph.initializers.keys.sorted(by: utf8Precedes) {
            guard let t = graph.initializers[name] else { continue }
            try tensors.append(Plan.planned(name: name, tensor: t, flags: CNXLayout.initializerFlag))
        }
        for (i, node) in graph.nodes.enumerated() {
            for key in node.attributes.keys.sorted(by: utf8Precedes) {
                guard case .tensor(let t)? = node.attributes[key] else { continue }
                attributeIndex[i][key] = tensors.count
                try tensors.append(Plan.planned(name: "\(node.name):\(key)", tensor: t, flags: 0))
            }
        }
        // Then the scales (and zero points) of quantized tensors, in the order of the tensors
        // they belong to (Formats/CNX.md, "Quantization kinds").
        for i in tensors.indices {
            guard let q = tensors[i].tensor.quantization else { continue }
            let name = tensors[i].name
            let what = "tensor '\(name)'"
            guard tensors[i].tensor.dtype == .int8 || tensors[i].tensor.dtype == .uint8 else {
                throw CNXError("\(what): only int8 and uint8 tensors are quantized, this one is \(tensors[i].tensor.dtype.name)")
            }
            let shape = tensors[i].tensor.shape
            guard q.axis >= 0, q.axis < shape.count, q.scales.count == shape[q.axis],
                q.zeroPoints.map({ $0.count == shape[q.axis] }) ?? true
            else {
                throw CNXError(
                    "\(what): quantization along axis \(q.axis) of \(shape) needs one scale (and zero point) per channel, got \(q.scales.count)"
                )
            }
            guard q.scales.allSatisfy({ $0 > 0 && $0.isFinite }) else {
                throw CNXError("\(what): quantization scales must be positive and finite")
            }
            let scalesIndex = tensors.count
            try tensors.append(Plan.planned(name: "\(name):scales", tensor: Tensor(floats: q.scales, shape: [q.scales.count]), flags: 0))
            var zeroIndex: Int?
            if let zeros = q.zeroPoints {
                let dtype = tensors[i].tensor.dtype
                for v in zeros where !(dtype == .int8 ? (-128...127).contains(v) : (0...255).contains(v)) {
                    throw CNXError("\(what): zero point \(v) does not fit \(dtype.name)")
                }
                let z = Tensor(zeros: dtype, shape: [zeros.count])
                z.withUnsafeMutableElementBytes { $0.copyBytes(from: zeros.map { UInt8(truncatingIfNeeded: $0) }) }
                zeroIndex = tensors.count
                try tensors.append(Plan.planned(name: "\(name):zero_points", tensor: z, flags: 0))
            }
            tensors[i].quantization = (q.axis, scalesIndex, zeroIndex)
        }
        var position = 0
        for i in tensors.indices {
            guard let offset = CNXLayout.aligned(position) else { throw CNXError("the data section overflows") }
            tensors[i].offset = offset
            let (end, overflow) = offset.addingReportingOverflow(tensors[i].byteCount)
            guard !overflow else { throw CNXError("the data section overflows") }
            position = end
        }
        dataSize = position

        var w = ByteWriter()
        w.zeros(CNXLayout.fixedHeaderSize)
        let metadataOffset = w.count
        Plan.writeMetadata(model.metadata, into: &w)
        let graphOffset = w.count
        try Plan.writeGraph(graph, attributeIndex: attributeIndex, into: &w)
        let tensorsOffset = w.count
        Plan.writeTensorTable(tensors, into: &w)
        let tensorsEnd = w.count
        guard let dataOffset = CNXLayout.aligned(tensorsEnd) else { throw CNXError("the header overflows") }
        w.zeros(dataOffset - tensorsEnd)

        // The fixed header, field by field as in `struct cnx_file_header`.
        var h = ByteWriter()
        h.raw(CNXLayout.magic)
        h.u16(CNXLayout.versionMajor)
        h.u16(CNXLayout.versionMinor)
        h.u32(0)  // header_crc32, patched below
        h.u32(0)  // flags
        for (offset, end) in [(metadataOffset, graphOffset), (graphOffset, tensorsOffset), (tensorsOffset, tensorsEnd)] {
            h.count(offset)
            h.count(end - offset)
        }
        h.count(dataOffset)
        h.count(dataSize)
        h.zeros(16)  // reserved
        var bytes = w.bytes
        bytes.replaceSubrange(0..<CNXLayout.fixedHeaderSize, with: h.bytes)
        let crc = CRC32.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { raw in
            for (i, b) in raw.enumerated() { bytes[CNXLayout.headerCRCOffset + i] = b }
        }
        header = bytes
    }

    /// Checks that the tensor's storage holds its shape's bytes, and computes its checksum.
    static func planned(name: String, tensor: Tensor, flags: UInt32) throws -> PlannedTensor {
        let dims = tensor.shape.map(String.init).joined(separator: ", ")
        guard let count = checkedElementCount(tensor.shape) else {
            throw CNXError("tensor '\(name)': invalid shape [\(dims)]")
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: tensor.dtype.size)
        guard !overflow else { throw CNXError("tensor '\(name)': shape [\(dims)] overflows") }
        guard tensor.storage.byteCount >= byteCount else {
            throw CNXError(
                "tensor '\(name)': shape [\(dims)] of \(tensor.dtype.name) needs \(byteCount) bytes, its storage holds \(tensor.storage.byteCount)"
            )
        }
        let crc = tensor.withUnsafeBytes { CRC32.checksum($0.baseAddress, $0.count) }
        return PlannedTensor(name: name, tensor: tensor, flags: flags, quantization: nil, byteCount: byteCount, offset: 0, crc: crc)
    }

    /// `struct cnx_metadata`.
    static func writeMetadata(_ metadata: [String: MetadataValue], into w: inout ByteWriter) {
        w.count(metadata.count)
        for key in metadata.keys.sorted(by: utf8Precedes) {
            guard let value = metadata[key] else { continue }
            w.string(key)
            w.typedValue(value) { $0.rawValue }
        }
    }

    /// `struct cnx_graph`.
    static func writeGraph(_ graph: Graph, attributeIndex: [[String: Int]], into w: inout ByteWriter) throws {
        w.count(graph.metadata.count)
        for key in graph.metadata.keys.sorted(by: utf8Precedes) {
            w.string(key)
            w.string(graph.metadata[key] ?? "")
        }
        for (values, kind) in [(graph.inputs, "input"), (graph.outputs, "output")] {
            w.count(values.count)
            for v in values { try writeValueInfo(v, what: "\(kind) '\(v.name)'", into: &w) }
        }
        w.count(graph.nodes.count)
        for (i, node) in graph.nodes.enumerated() {
            w.string(node.name)
            w.string(node.op.rawValue)
            w.count(node.inputs.count)
            for s in node.inputs { w.string(s) }
            w.count(node.outputs.count)
            for s in node.outputs { w.string(s) }
            w.count(node.attributes.count)
            for key in node.attributes.keys.sorted(by: utf8Precedes) {
                guard let value = node.attributes[key] else { continue }
                w.string(key)
                if let encoded = value.encoded {
                    w.typedValue(encoded) { CNXLayout.AttributeType.of($0)!.rawValue }
                    continue
                }
                guard let index = attributeIndex[i][key] else {
                    throw CNXError("\(node.label): attribute '\(key)' has no tensor table entry")
                }
                w.u8(CNXLayout.AttributeType.tensor.rawValue)
                w.count(index)
            }
        }
    }

    /// `struct cnx_value_info`; refuses what a reader would refuse.
    static func writeValueInfo(_ v: ValueInfo, what: String, into w: inout ByteWriter) throws {
        w.string(v.name)
        w.i32(v.dtype.rawValue)
        guard let shape = v.shape else {
            w.i64(-1)
            return
        }
        w.i64(shape.count)
        for (axis, d) in shape.enumerated() {
            switch d {
            case .fixed(let value):
                guard value >= 0 else { throw CNXError("\(what): dimension \(axis) is \(value)") }
                w.u8(CNXLayout.DimKind.fixed.rawValue)
                w.i64(value)
            case .symbolic(let name, let num, let den):
                guard num >= 1, den >= 1 else {
                    throw CNXError("\(what): dimension \(axis) is \(d), a factor \(num)/\(den) the format cannot hold")
                }
                w.u8(CNXLayout.DimKind.symbolic.rawValue)
                w.string(name)
                w.i64(num)
                w.i64(den)
            case .unknown:
                w.u8(CNXLayout.DimKind.unknown.rawValue)
            }
        }
    }

    /// `struct cnx_tensor_table`.
    static func writeTensorTable(_ tensors: [PlannedTensor], into w: inout ByteWriter) {
        w.count(tensors.count)
        for t in tensors {
            w.string(t.name)
            w.u32(t.flags)
            w.i32(t.tensor.dtype.rawValue)
            w.u32(UInt32(t.tensor.shape.count))
            for d in t.tensor.shape { w.i64(d) }
            // struct cnx_quantization, 24 bytes.
            if let q = t.quantization {
                w.u8(CNXLayout.QuantizationKind.perChannel.rawValue)
                w.zeros(3)
                w.i32(Int32(q.axis))
                w.count(q.scales)
                if let z = q.zeroPoints { w.count(z) } else { w.u64(CNXLayout.noZeroPoints) }
            } else {
                w.u8(CNXLayout.QuantizationKind.none.rawValue)
                w.zeros(CNXLayout.quantizationSize - 1)
            }
            w.count(t.offset)
            w.count(t.byteCount)
            w.u32(t.crc)
        }
    }
}

/// A temporary file beside the destination that becomes the destination only when complete.
final class AtomicOutput {
    let path: String
    let temporaryPath: String
    private var fd: Int32
    /// Removes the temporary file if a signal ends the process before commit or abandon.
    private var registration: InterruptCleanup.Token?

    init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CNXError("\(path): cannot write: the directory \(directory) does not exist")
        }
        // Same directory, so the rename cannot cross file systems; a leading dot and a .tmp
        // suffix so a crash's leftover is hidden and git-ignored.
        var attempt = 0
        while true {
            let candidate = url.deletingLastPathComponent()
                .appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp").path
            let registration = InterruptCleanup.register(candidate)
            let opened = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if opened >= 0 {
                fd = opened
                temporaryPath = candidate
                self.registration = registration
                return
            }
            let reason = errno
            InterruptCleanup.unregister(registration)
            attempt += 1
            guard reason == EEXIST, attempt < 16 else {
                throw CNXError("\(path): cannot create a temporary file in \(directory) (\(String(cString: strerror(reason))))")
            }
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0, what: "the header") }
    }

    func writeZeros(_ count: Int) throws {
        guard count > 0 else { return }
        let zeros = [UInt8](repeating: 0, count: count)
        try write(zeros)
    }

    /// Writes all of `bytes`, continuing after short writes and signals.
    func write(_ bytes: UnsafeRawBufferPointer, what: String) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = Foundation.write(fd, base + done, min(bytes.count - done, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw CNXError("\(path): cannot write \(what) (\(String(cString: strerror(errno))))")
            }
            guard n > 0 else { throw CNXError("\(path): cannot write \(what) (no progress)") }
            done += n
        }
    }

    /// Flushes the file to disk and renames it over the destination.
    func commit() throws {
        guard fsync(fd) == 0 else { throw CNXError("\(path): cannot flush to disk (\(String(cString: strerror(errno))))") }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw CNXError("\(path): cannot close (\(String(cString: strerror(errno))))") }
        guard rename(temporaryPath, path) == 0 else {
            throw CNXError("\(path): cannot rename the finished temporary file into place (\(String(cString: strerror(errno))))")
        }
        InterruptCleanup.unregister(registration)
        registration = nil
        // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let dfd = open(directory, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// Closes and removes the temporary file after a failure.
    func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temporaryPath)
        InterruptCleanup.unregister(registration)
        registration = nil
    }

    deinit {
        if fd >= 0 { close(fd) }
        InterruptCleanup.unregister(registration)
    }
}
