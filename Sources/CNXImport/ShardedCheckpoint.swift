import CNXGraph
import Foundation

/// A checkpoint split into shards, as the model hubs ship anything past a few GB:
/// `model.safetensors.index.json` or `pytorch_model.bin.index.json`, a JSON object whose
/// `weight_map` maps every tensor name to the shard file (in the same folder) that holds it:
///
///     {"metadata": {"total_size": 3385472000},
///      "weight_map": {"stem.0.weight": "model-00001-of-00003.safetensors", ...}}
///
/// The shards are read one by one, each through its own reader (safetensors or torch zip, told
/// apart by content); their tensors stay views of each shard's mapping, so memory is what one
/// unsharded file would take. Refused, with one line naming the file and the tensor: an index
/// naming a shard that is not there (or a path outside the folder), a tensor in two shards, a
/// tensor the index maps to another shard than the one holding it, a shard holding a tensor the
/// index does not list, and an index listing a tensor its shard does not hold.
public enum ShardedCheckpoint {
    /// True for a file name ending in `.index.json`.
    public static func isIndex(_ path: String) -> Bool { path.lowercased().hasSuffix(".index.json") }

    /// The shard files of `indexPath`, in the order they first appear in the weight map.
    public static func shards(_ indexPath: String) throws -> (map: [String: String], files: [String]) {
        let object = try readJSONObject(indexPath)
        guard let raw = object["weight_map"] as? [String: Any] else {
            throw CNXError("\(indexPath): no weight_map object (a sharded checkpoint's index maps each tensor to its shard)")
        }
        var map: [String: String] = [:]
        var files: [String] = []
        for key in raw.keys.sorted() {
            guard let file = raw[key] as? String, !file.isEmpty else {
                throw CNXError("\(indexPath): weight_map entry '\(key)' is not a file name")
            }
            guard !file.contains("/"), !file.contains("\\"), file != ".", file != ".." else {
                throw CNXError("\(indexPath): weight_map entry '\(key)' names '\(file)', which is not a file in the index's folder")
            }
            map[key] = file
            if !files.contains(file) { files.append(file) }
        }
        guard !files.isEmpty else { throw CNXError("\(indexPath): the weight_map is empty") }
        return (map, files.sorted())
    }

    /// Reads every shard of `indexPath` into one state dict.
    public static func load(indexPath: String) throws -> (stateDict: StateDict, kind: CheckpointReader.Kind, shards: [String]) {
        let (map, files) = try shards(indexPath)
        let folder = URL(fileURLWithPath: indexPath).deletingLastPathComponent()
        var names: [String] = []
        var tensors: [String: Tensor] = [:]
        var holder: [String: String] = [:]
        var kinds: Set<CheckpointReader.Kind> = []
        for file in files {
            let path = folder.appendingPathComponent(file).path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw CNXError("\(indexPath): the index names shard '\(file)', which does not exist in \(folder.path)")
            }
            let kind = CheckpointReader.kind(of: path)
            kinds.insert(kind)
            let shard = kind == .safetensors ? try SafetensorsReader.load(path: path) : try TorchCheckpoint.load(path: path)
            for name in shard.names {
                if let other = holder[name] {
                    throw oneLine(CNXError("\(indexPath): tensor '\(name)' is in shard '\(other)' and again in shard '\(file)'"))
                }
                guard let mapped = map[name] else {
                    throw oneLine(CNXError("\(indexPath): shard '\(file)' holds tensor '\(name)', which the weight_map does not list"))
                }
                guard mapped == file else {
                    throw oneLine(
                        CNXError("\(indexPath): the weight_map puts tensor '\(name)' in shard '\(mapped)', but shard '\(file)' holds it"))
                }
                holder[name] = file
                names.append(name)
                tensors[name] = shard.tensors[name]
            }
        }
        for (name, file) in map.sorted(by: { $0.key < $1.key }) where holder[name] == nil {
            throw oneLine(CNXError("\(indexPath): the weight_map puts tensor '\(name)' in shard '\(file)', which does not hold it"))
        }
        guard kinds.count == 1, let kind = kinds.first else {
            throw CNXError("\(indexPath): the shards mix safetensors and PyTorch files")
        }
        return (StateDict(names: names, tensors: tensors), kind, files)
    }
}
