import CNXGraph
import Foundation

/// The error with control characters escaped (a newline as `\n`): key names come from the file
/// and may hold anything, but a message stays one line that cannot drive a terminal.
func oneLine(_ e: CNXError) -> CNXError {
    e.escapingControlCharacters
}

/// A checkpoint read into a graph.
public struct Checkpoint {
    public var graph: Graph
    /// "safetensors" or "pth".
    public var format: String
    public var scheme: NamingScheme
    /// The `config.json` found with the weights, if any.
    public var modelConfig: ModelConfig?
    /// The timm hub config found with the weights, if any.
    public var config: TimmHubConfig? { modelConfig?.timm }
    /// The file the weights came from (inside the folder, for a hub folder; the index, when sharded).
    public var weightsPath: String
    /// The shard files, for a sharded checkpoint.
    public var shards: [String]
    /// The values the weights do not carry, as used, with their sources.
    public var hyperparameters: Hyperparameters
    public var assumptions: [Assumption] { hyperparameters.assumptions }
}

/// Reads a checkpoint of any kind this project knows into a graph: a `.safetensors` file, a
/// PyTorch zip (`.pth`, `.pt`, `.bin`), a sharded checkpoint's `*.index.json`, or a folder
/// holding one of those (`model.safetensors`, `model.safetensors.index.json`,
/// `pytorch_model.bin`, `pytorch_model.bin.index.json`, `model.pth`, `model.pt`) and a timm or
/// transformers `config.json`. A `config.json` beside a weights file is read too.
public enum CheckpointReader {
    public enum Kind: String, Sendable { case safetensors, pth }

    /// The weights files a folder may hold, in the order they are looked for.
    public static let folderWeights = [
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
        "pytorch_model.bin.index.json", "model.pth", "model.pt",
    ]

    /// The weights file of `path`: itself, or the one inside a folder.
    public static func weightsFile(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CNXError("\(path): no such file or folder")
        }
        guard isDirectory.boolValue else { return path }
        for name in folderWeights {
            let p = URL(fileURLWithPath: path).appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        throw CNXError("\(path): a folder without \(folderWeights.joined(separator: ", "))")
    }

    /// A weights file's kind by its content: a zip is a PyTorch checkpoint, anything else is
    /// read as safetensors.
    public static func kind(of path: String) -> Kind {
        let head =
            FileHandle(forReadingAtPath: path).flatMap { h -> Data? in
                defer { try? h.close() }
                return try? h.read(upToCount: 4)
            } ?? Data()
        return [UInt8](head) == [0x50, 0x4B, 0x03, 0x04] ? .pth : .safetensors
    }

    /// Loads `path` as `kind` (a folder: by the weights file found in it; an index: by its
    /// shards). `options` are the command line's say on the values the weights do not carry.
    public static func load(path: String, kind: Kind, options: CheckpointOptions = CheckpointOptions()) throws -> Checkpoint {
        let weights = try weightsFile(path)
        let configPath = URL(fileURLWithPath: weights).deletingLastPathComponent().appendingPathComponent("config.json").path
        var config: ModelConfig?
        if FileManager.default.fileExists(atPath: configPath) { config = try ModelConfig.read(path: configPath) }
        let stateDict: StateDict
        var format = kind
        var shards: [String] = []
        if ShardedCheckpoint.isIndex(weights) {
            let sharded = try ShardedCheckpoint.load(indexPath: weights)
            (stateDict, format, shards) = (sharded.stateDict, sharded.kind, sharded.shards)
        } else {
            stateDict = kind == .safetensors ? try SafetensorsReader.load(path: weights) : try TorchCheckpoint.load(path: weights)
        }
        let name = URL(fileURLWithPath: weights).lastPathComponent
        let built: StateDictGraph.Built
        do {
            built = try StateDictGraph.build(
                stateDict, format: format.rawValue, source: name, options: options,
                config: config, configPath: configPath)
        } catch let e as CNXError {
            // A config.json that disagrees with the weights is named as the culprit.
            throw oneLine(e.message.hasPrefix(configPath) ? e : e.inFile(weights))
        }
        if let config = config?.timm {
            let classes = built.classes
            if let n = config.numClasses, let classes, n != classes {
                throw CNXError("\(configPath): num_classes is \(n) but the weights in \(name) have \(classes) classes")
            }
            if let names = config.classNames, let classes, names.count != classes {
                throw CNXError("\(configPath): \(names.count) label names for \(classes) classes")
            }
        }
        return Checkpoint(
            graph: built.graph, format: format.rawValue, scheme: built.scheme, modelConfig: config,
            weightsPath: weights, shards: shards, hyperparameters: built.hyperparameters)
    }
}
