import CNXGraph
import Foundation

/// Reads the state dict inside a PyTorch `.pth` / `.pt` / `.bin` file without running its pickle.
///
/// Since PyTorch 1.6, `torch.save` writes a zip archive whose entries share one top folder
/// (`<name>/`): `data.pkl` (the pickled object, whose tensors refer to storages by key through
/// persistent ids), `data/<key>` (each storage's raw bytes, stored uncompressed and aligned to 64
/// bytes), `byteorder` (`little` or `big`), `version` and a few more. The pickle is read by
/// `RestrictedUnpickler`, which accepts only what a state dict needs and executes nothing; the
/// storages are views of the mapped archive (`mapped: true`) when stored and aligned, else copies.
///
/// The state dict is found in the common wrappers: the object itself when it is a dict of
/// tensors, else the dict under `state_dict`, `model`, `model_state_dict`, `module`, `net`,
/// `network` or `weights` (then `state_dict_ema`, `model_ema`, `ema` when no other is there),
/// searched up to four levels deep.
public enum TorchCheckpoint {
    static let wrapperKeys = [
        "state_dict", "model", "model_state_dict", "module", "net", "network", "weights",
        "state_dict_ema", "model_ema", "ema",
    ]

    /// Loads the state dict of `path`; errors name the file, and the tensor or byte offset.
    public static func load(path: String) throws -> StateDict {
        do {
            return try read(path: path)
        } catch let e as CNXError {
            throw oneLine(e.inFile(path))
        }
    }

    static func read(path: String) throws -> StateDict {
        let archive: ZipArchive
        do {
            archive = try ZipArchive(path: path)
        } catch let e as CNXError {
            if let head = FileHandle(forReadingAtPath: path).flatMap({ try? $0.read(upToCount: 2) }), head.first == 0x80 {
                throw CNXError(
                    "a pickle, not a zip archive: the legacy torch.save format (before PyTorch 1.6) is not read; re-save it with a current PyTorch"
                )
            }
            throw CNXError("not a PyTorch checkpoint (torch.save writes a zip archive): \(e.message)")
        }
        let pickles = archive.entries.filter { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }
        guard let pickleEntry = pickles.min(by: { $0.name.count < $1.name.count }) else {
            throw CNXError("a zip archive without data.pkl: not written by torch.save")
        }
        let root = String(pickleEntry.name.dropLast("data.pkl".count))
        if let order = archive.entry(root + "byteorder") {
            let b = try archive.bytes(order)
            let text = b.withUnsafeBytes { String(decoding: $0.prefix(16), as: UTF8.self) }
            guard text.trimmingCharacters(in: .whitespacesAndNewlines) == "little" else {
                throw CNXError("\(order.name) says '\(text)': only little-endian checkpoints are read")
            }
        }
        let pickleBytes = try archive.bytes(pickleEntry)
        if pickleEntry.method == 0 {
            let crc = pickleBytes.withUnsafeBytes { ZipArchive.crc($0.baseAddress!, $0.count) }
            guard crc == pickleEntry.crc32 else {
                throw CNXError(
                    "\(pickleEntry.name) at byte \(pickleEntry.dataOffset): CRC-32 \(String(crc, radix: 16)) does not match the directory's \(String(pickleEntry.crc32, radix: 16))"
                )
            }
        }
        let document = try pickleBytes.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, what: pickleEntry.name).load() }
        return try withExtendedLifetime(document) {
            try stateDict(document.root, archive: archive, root: root)
        }
    }

    /// The tensors of the state dict inside `value`.
    static func stateDict(_ value: PickleValue, archive: ZipArchive, root: String) throws -> StateDict {
        let (dict, location) = try findStateDict(value, at: "the pickled object", depth: 0)

        var storages: [String: Storage] = [:]
        var names: [String] = []
        var tensors: [String: Tensor] = [:]
        for (k, v) in zip(dict.keys, dict.values) {
            guard case .tensor(let t) = v else { continue }
            guard case .string(let name) = k else { throw CNXError("\(location) has a tensor under a \(k.kind) key") }
            let bytes: Storage
            if let cached = storages[t.storage.key] {
                bytes = cached
            } else {
                let entryName = root + "data/" + t.storage.key
                guard let entry = archive.entry(entryName) else {
                    throw CNXError("tensor '\(name)': its storage '\(entryName)' is not in the archive")
                }
                // torch.save writes exactly the storage's bytes; anything else is not read (nor inflated).
                let needed = t.storage.count.multipliedReportingOverflow(by: t.storage.type.elementSize)
                guard !needed.overflow, entry.uncompressedSize == needed.partialValue else {
                    throw CNXError(
                        "tensor '\(name)': storage '\(entryName)' at byte \(entry.dataOffset) holds \(entry.uncompressedSize) bytes, but \(t.storage.count) elements of \(t.storage.type.rawValue) are \(needed.overflow ? "too many" : String(needed.partialValue) + " bytes")"
                    )
                }
                bytes = try archive.bytes(entry)
                storages[t.storage.key] = bytes
            }
            tensors[name] = try materialise(t, name: name, bytes: bytes, entryName: root + "data/" + t.storage.key)
            names.append(name)
        }
        guard !names.isEmpty else { throw CNXError("\(location) holds no tensors") }
        return StateDict(names: names, tensors: tensors, metadata: [:])
    }

    /// The dict of tensors inside `value`, and where it was found (for messages).
    static func findStateDict(_ value: PickleValue, at location: String, depth: Int) throws -> (PickleDict, String) {
        guard case .dict(let d) = value else {
            throw CNXError("\(location) is a \(value.kind), not a dict of tensors")
        }
        let hasTensors = d.values.contains { if case .tensor = $0 { return true } else { return false } }
        if hasTensors { return (d, location) }
        if depth < 4 {
            for key in wrapperKeys {
                if let inner = d[key], case .dict = inner {
                    if let found = try? findStateDict(inner, at: "\(location)['\(key)']", depth: depth + 1) { return found }
                }
            }
        }
        let keys = d.keys.prefix(20).map { k -> String in
            if case .string(let s) = k { return "'\(s)'" }
            return k.kind
        }
        throw CNXError(
            "no state dict found: \(location) is a dict with keys [\(keys.joined(separator: ", "))] and no tensors; looked under \(wrapperKeys.map { "'\($0)'" }.joined(separator: ", "))"
        )
    }

    /// A tensor from its storage bytes: only contiguous (row-major) views are read.
    static func materialise(_ t: PickleTensor, name: String, bytes: Storage, entryName: String) throws -> Tensor {
        guard let count = checkedElementCount(t.shape) else { throw CNXError("tensor '\(name)': size \(t.shape) overflows") }
        var expected = 1
        for k in stride(from: t.shape.count - 1, through: 0, by: -1) {
            if t.shape[k] > 1 && t.strides[k] != expected {
                throw CNXError("tensor '\(name)' is not contiguous (size \(t.shape), stride \(t.strides)); save it after .contiguous()")
            }
            expected = expected.multipliedReportingOverflow(by: max(t.shape[k], 1)).partialValue
        }
        let size = t.storage.type.elementSize
        let end = t.offset.addingReportingOverflow(count)
        guard !end.overflow, end.partialValue <= t.storage.count,
            !end.partialValue.multipliedReportingOverflow(by: size).overflow, end.partialValue * size <= bytes.byteCount
        else {
            throw CNXError(
                "tensor '\(name)': elements \(t.offset)..<\(t.offset + count) lie outside its storage '\(entryName)' of \(t.storage.count) elements"
            )
        }
        return tensorFromBytes(
            dtype: t.storage.type.dtype, shape: t.shape, bytes: Storage(slicing: bytes, offset: t.offset * size, byteCount: count * size))
    }
}
