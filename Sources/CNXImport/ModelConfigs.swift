import CNXGraph
import Foundation

/// The `config.json` found with a checkpoint: timm's (`timm.models.save_for_hf`) or
/// transformers' (`save_pretrained`).
public enum ModelConfig: Sendable {
    case timm(TimmHubConfig)
    case transformers(TransformersConfig)

    /// Reads `path`: nil when it is neither kind (another tool's `config.json`).
    public static func read(path: String) throws -> ModelConfig? {
        let object = try readJSONObject(path)
        if object["architecture"] is String || object["pretrained_cfg"] is [String: Any] {
            return .timm(TimmHubConfig(object))
        }
        if object["model_type"] != nil {
            return .transformers(try TransformersConfig(object, path: path))
        }
        return nil
    }

    public var timm: TimmHubConfig? { if case .timm(let c) = self { return c } else { return nil } }
    public var transformers: TransformersConfig? { if case .transformers(let c) = self { return c } else { return nil } }
}

func readJSONObject(_ path: String) throws -> [String: Any] {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw CNXError("\(path): cannot read (\(error.localizedDescription))")
    }
    guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        throw CNXError("\(path): not a JSON object")
    }
    return object
}

private func ints(_ v: Any?) -> [Int]? {
    guard let list = v as? [Any] else { return nil }
    let out = list.compactMap { ($0 as? NSNumber)?.intValue }
    return out.count == list.count ? out : nil
}

private func floats(_ v: Any?) -> [Float]? {
    guard let list = v as? [Any] else { return nil }
    let out = list.compactMap { ($0 as? NSNumber)?.floatValue }
    return out.count == list.count ? out : nil
}

/// What a timm model-hub folder's `config.json` says about the weights beside it.
public struct TimmHubConfig: Sendable {
    /// The timm model name, e.g. `convnext_tiny`.
    public var architecture: String?
    /// The pretrained tag, e.g. `in12k_ft_in1k`.
    public var tag: String?
    public var numClasses: Int?
    /// [channels, height, width].
    public var inputSize: [Int]?
    public var interpolation: String?
    public var cropPct: Float?
    public var mean: [Float]?
    public var std: [Float]?
    /// One per class, in logit order: the label descriptions where given, else the label names.
    public var classNames: [String]?
    /// `model_args`: the arguments the model was built with beyond its registration's.
    public var modelArgs = ModelArgs()

    public struct ModelArgs: Sendable {
        public var depths: [Int]?
        public var dims: [Int]?
        /// `norm_eps`: present as a number, or present as null (timm's LayerNorm default).
        public var normEps: Float?
        public var normEpsIsNull = false
        public var actLayer: String?
        public var normLayer: String?
    }

    /// Reads `path`; returns nil when the JSON is not a timm config (no `architecture` and no
    /// `pretrained_cfg`).
    public static func read(path: String) throws -> TimmHubConfig? {
        try ModelConfig.read(path: path)?.timm
    }

    init(_ object: [String: Any]) {
        let cfg = object["pretrained_cfg"] as? [String: Any] ?? [:]
        architecture = object["architecture"] as? String ?? cfg["architecture"] as? String
        tag = cfg["tag"] as? String
        numClasses = (object["num_classes"] as? NSNumber)?.intValue ?? (cfg["num_classes"] as? NSNumber)?.intValue
        inputSize = ints(cfg["input_size"]).flatMap { $0.count == 3 ? $0 : nil }
        interpolation = cfg["interpolation"] as? String
        cropPct = (cfg["crop_pct"] as? NSNumber)?.floatValue
        mean = floats(cfg["mean"]).flatMap { $0.count == 3 ? $0 : nil }
        std = floats(cfg["std"]).flatMap { $0.count == 3 ? $0 : nil }
        var names: [String]?
        let rawNames = object["label_names"] ?? cfg["label_names"]
        if let list = rawNames as? [Any] {
            names = list.map { "\($0)" }
        } else if let dict = rawNames as? [String: Any] {
            // {"0": "name", ...}: ids must run from 0 without gaps.
            let pairs = dict.compactMap { k, v in Int(k).map { ($0, "\(v)") } }.sorted { $0.0 < $1.0 }
            if pairs.count == dict.count, pairs.enumerated().allSatisfy({ $0.offset == $0.element.0 }) { names = pairs.map(\.1) }
        }
        if let n = names, let descriptions = (object["label_descriptions"] ?? cfg["label_descriptions"]) as? [String: Any] {
            names = n.map { descriptions[$0] as? String ?? $0 }
        }
        classNames = names
        if let args = object["model_args"] as? [String: Any] {
            modelArgs.depths = ints(args["depths"])
            modelArgs.dims = ints(args["dims"])
            if args.keys.contains("norm_eps") {
                if let v = args["norm_eps"] as? NSNumber {
                    modelArgs.normEps = v.floatValue
                } else {
                    modelArgs.normEpsIsNull = args["norm_eps"] is NSNull
                }
            }
            modelArgs.actLayer = args["act_layer"] as? String
            modelArgs.normLayer = args["norm_layer"] as? String
        }
    }
}

/// What a transformers `config.json` (`ConvNextConfig`, `ConvNextV2Config`) says.
public struct TransformersConfig: Sendable {
    public var path: String
    /// `convnext` or `convnextv2`.
    public var modelType: String
    public var architectures: [String]
    public var hiddenSizes: [Int]?
    public var depths: [Int]?
    public var numStages: Int?
    public var numChannels: Int?
    public var patchSize: Int?
    public var hiddenAct: String?
    /// The pooled norm's epsilon (transformers' own default is 1e-12); the network's other norms
    /// hard-code 1e-6.
    public var layerNormEps: Float?
    /// `id2label` in logit order, when its ids run from 0 without gaps.
    public var labels: [String]?

    init(_ object: [String: Any], path: String) throws {
        self.path = path
        let type = object["model_type"] as? String ?? "\(object["model_type"] ?? "")"
        guard type == "convnext" || type == "convnextv2" else {
            throw CNXError("\(path): a transformers config for model_type '\(type)', not a ConvNeXt (convnext or convnextv2)")
        }
        modelType = type
        architectures = (object["architectures"] as? [Any])?.compactMap { $0 as? String } ?? []
        hiddenSizes = ints(object["hidden_sizes"])
        depths = ints(object["depths"])
        numStages = (object["num_stages"] as? NSNumber)?.intValue
        numChannels = (object["num_channels"] as? NSNumber)?.intValue
        patchSize = (object["patch_size"] as? NSNumber)?.intValue
        hiddenAct = object["hidden_act"] as? String
        layerNormEps = (object["layer_norm_eps"] as? NSNumber)?.floatValue
        if let id2label = object["id2label"] as? [String: Any] {
            let pairs = id2label.compactMap { k, v in Int(k).map { ($0, "\(v)") } }.sorted { $0.0 < $1.0 }
            if pairs.count == id2label.count, pairs.enumerated().allSatisfy({ $0.offset == $0.element.0 }) { labels = pairs.map(\.1) }
        }
    }

    /// The labels, unless they are transformers' placeholders (`LABEL_0`, `LABEL_1`, ...).
    public var classNames: [String]? {
        guard let labels else { return nil }
        return labels.enumerated().allSatisfy({ $0.element == "LABEL_\($0.offset)" }) ? nil : labels
    }
}
