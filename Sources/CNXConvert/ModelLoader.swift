import CNXFormat
import CNXGraph
import CNXImport
import CNXReference
import Foundation

/// A model file of any kind the tool reads, as a graph and its metadata.
public struct LoadedModel {
    public var graph: Graph
    public var metadata: [String: MetadataValue]
    /// "cnx", "onnx", "safetensors" or "pth".
    public var format: String
    /// For a checkpoint: the values its weights do not carry, as used, with their sources.
    public var assumptions: [Assumption] = []
}

/// Chooses the reader for a model by its content first, then its extension:
///
/// - a folder: the checkpoint inside (`model.safetensors`, its sharded `.index.json`,
///   `pytorch_model.bin`, its `.index.json`, `model.pth`), with the timm or transformers
///   `config.json` beside it;
/// - a sharded checkpoint's `*.index.json`;
/// - `CNX\0`: a `.cnx` file;
/// - `PK\x03\x04`: a zip archive, which is what `torch.save` writes (`.pth`, `.pt`, `.bin`);
/// - an 8-byte length followed by `{`, or the `.safetensors` extension: safetensors;
/// - anything else: ONNX.
///
/// For checkpoints, a timm `config.json` next to the weights gives the model name, the class
/// names and the preprocessing, a transformers one the class names; they are returned as `.cnx`
/// metadata, with every value the reader assumed (`source.assumed.*`). `options` are the command
/// line's say on those values (`--layer-norm-eps`, `--activation`, `--norm`).
public enum ModelLoader {
    public static func load(_ path: String, options: CheckpointOptions = CheckpointOptions()) throws -> LoadedModel {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        guard exists else {
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            if !FileManager.default.fileExists(atPath: folder) {
                throw CNXError("\(path): no such file (the folder \(folder) does not exist)")
            }
            throw CNXError("\(path): no such file")
        }
        if !isDirectory.boolValue, access(path, R_OK) != 0 { throw CNXError("\(path): cannot read (\(String(cString: strerror(errno))))") }
        if exists && isDirectory.boolValue {
            let weights = try CheckpointReader.weightsFile(path)
            return try loadCheckpoint(path, kind: CheckpointReader.kind(of: weights), options: options)
        }
        if exists && ShardedCheckpoint.isIndex(path) {
            return try loadCheckpoint(path, kind: .safetensors, options: options)
        }
        let head = firstBytes(path, 16)
        if CNXReader.hasMagic(head) {
            let file = try CNXReader.load(path: path)
            var graph = file.graph
            // A 1.0/1.1 int8 file's weight scales, moved to where a 1.2 file keeps them.
            FusedPayload.upgrade(&graph)
            return LoadedModel(graph: graph, metadata: file.metadata, format: "cnx")
        }
        let lower = path.lowercased()
        if head.count >= 4 && Array(head.prefix(4)) == [0x50, 0x4B, 0x03, 0x04] {  // "PK\3\4"
            return try loadCheckpoint(path, kind: .pth, options: options)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        if lower.hasSuffix(".safetensors") || SafetensorsReader.looksLikeSafetensors(head, fileSize: size) {
            return try loadCheckpoint(path, kind: .safetensors, options: options)
        }
        if [".pth", ".pt", ".bin", ".ckpt"].contains(where: { lower.hasSuffix($0) }) {
            // Not a zip: TorchCheckpoint explains (an empty file, the legacy pickle format, ...).
            return try loadCheckpoint(path, kind: .pth, options: options)
        }
        do {
            return LoadedModel(graph: try ONNXReader.load(path: path), metadata: [:], format: "onnx")
        } catch let e as CNXError where lower.hasSuffix(".cnx") {
            // Named .cnx but without its magic: say what it is not, rather than an ONNX parse error.
            let what =
                head.isEmpty
                ? "an empty file"
                : head.allSatisfy({ $0 == 9 || $0 == 10 || $0 == 13 || (32..<127).contains($0) }) ? "a text file" : "a file"
            _ = e
            throw CNXError("\(path): \(what), not a .cnx model (no CNX magic at byte 0) nor an ONNX model")
        } catch let e as CNXError where !lower.hasSuffix(".onnx") {
            throw CNXError(
                "\(e.message) (read as ONNX; this version reads .onnx, .cnx, .safetensors, PyTorch .pth files, sharded .index.json checkpoints, and timm and transformers folders)"
            )
        }
    }

    /// The file whose bytes a model path stands for: the path itself, or for a checkpoint folder
    /// the weights file inside it (for the source's SHA-256).
    public static func sourceFile(_ path: String) -> String {
        (try? CheckpointReader.weightsFile(path)) ?? path
    }

    static func loadCheckpoint(_ path: String, kind: CheckpointReader.Kind, options: CheckpointOptions) throws -> LoadedModel {
        let checkpoint = try CheckpointReader.load(path: path, kind: kind, options: options)
        var metadata: [String: MetadataValue] = [:]
        if let c = checkpoint.config {
            if let a = c.architecture { metadata[MetadataKey.variant] = .string(a) }
            if let names = c.classNames { metadata[MetadataKey.classNames] = .strings(names) }
            if let s = c.inputSize { metadata[MetadataKey.inputSize] = .ints([Int64(s[1]), Int64(s[2])]) }
            if let m = c.mean { metadata[MetadataKey.mean] = .floats(m) }
            if let s = c.std { metadata[MetadataKey.std] = .floats(s) }
            if let i = c.interpolation { metadata[MetadataKey.interpolation] = .string(i) }
            if let p = c.cropPct { metadata[MetadataKey.cropPct] = .float(p) }
            if let t = c.tag { metadata["source.pretrained_tag"] = .string(t) }
        }
        if let c = checkpoint.modelConfig?.transformers {
            if let names = c.classNames { metadata[MetadataKey.classNames] = .strings(names) }
            if let a = c.architectures.first { metadata[MetadataKey.sourceTransformersArchitecture] = .string(a) }
            // The image processor's transform, from preprocessor_config.json beside config.json.
            let folder = URL(fileURLWithPath: c.path).deletingLastPathComponent().path
            for (k, v) in try TransformersPreprocessing.metadata(folder: folder) { metadata[k] = v }
        }
        metadata["source.naming_scheme"] = .string(checkpoint.scheme.name)
        if !checkpoint.shards.isEmpty { metadata[MetadataKey.sourceShards] = .strings(checkpoint.shards) }
        // Every value the weights do not carry, with where it came from (Formats/CHECKPOINTS.md).
        for a in checkpoint.assumptions { metadata[a.metadataKey] = .string(a.metadataValue) }
        return LoadedModel(graph: checkpoint.graph, metadata: metadata, format: checkpoint.format, assumptions: checkpoint.assumptions)
    }

    static func firstBytes(_ path: String, _ n: Int) -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        return [UInt8]((try? handle.read(upToCount: n)) ?? Data())
    }

    /// True when the file starts with the `.cnx` magic.
    static func isCNX(_ path: String) -> Bool {
        CNXReader.hasMagic(firstBytes(path, 4))
    }
}
