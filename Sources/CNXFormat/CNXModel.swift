import CNXGraph

/// One typed metadata value (Formats/CNX.md, `enum cnx_metadata_type`).
public enum MetadataValue: Equatable, Sendable {
    case string(String)
    case int(Int64)
    case float(Float)
    case double(Double)
    case bool(Bool)
    case ints([Int64])
    case floats([Float])
    case strings([String])

    public var stringValue: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var intValue: Int64? {
        if case .int(let v) = self { return v }
        return nil
    }

    public var intsValue: [Int64]? {
        if case .ints(let v) = self { return v }
        return nil
    }

    public var floatsValue: [Float]? {
        if case .floats(let v) = self { return v }
        return nil
    }

    public var stringsValue: [String]? {
        if case .strings(let v) = self { return v }
        return nil
    }
}

/// What a .cnx file holds: the graph with its constant tensors, and typed metadata about it.
public struct CNXModel: @unchecked Sendable {
    public var graph: Graph
    /// Standard keys are listed in `MetadataKey` and Formats/CNX.md; others are kept as they are.
    public var metadata: [String: MetadataValue]

    public init(graph: Graph, metadata: [String: MetadataValue] = [:]) {
        self.graph = graph
        self.metadata = metadata
    }
}

/// The standard metadata keys of Formats/CNX.md, so that writers and readers spell them once.
public enum MetadataKey {
    public static let architecture = "general.architecture"
    public static let variant = "general.variant"
    public static let family = "general.family"
    public static let classNames = "general.class_names"
    public static let depths = "convnext.depths"
    public static let dims = "convnext.dims"
    public static let classes = "convnext.classes"
    public static let features = "convnext.features"
    public static let outputs = "model.outputs"
    public static let stem = "convnext.stem"
    public static let inputSize = "input.size"
    public static let mean = "preprocess.mean"
    public static let std = "preprocess.std"
    public static let interpolation = "preprocess.interpolation"
    public static let cropPct = "preprocess.crop_pct"
    public static let resizeMode = "preprocess.resize"
    public static let cropOffset = "preprocess.crop_offset"
    public static let rescaleFactor = "preprocess.rescale_factor"
    public static let sourceFileName = "source.file_name"
    public static let sourceSHA256 = "source.sha256"
    public static let sourceNamingScheme = "source.naming_scheme"
    public static let sourcePretrainedTag = "source.pretrained_tag"
    public static let converterVersion = "converter.version"
    public static let converterPasses = "converter.passes"
    public static let quantizationDescription = "quantization.description"
    public static let quantizationMethod = "quantization.method"
    public static let quantizationSamples = "quantization.samples"
    public static let quantizationInt8Layers = "quantization.int8_layers"
    public static let quantizationFloatLayers = "quantization.float_layers"
    public static let quantizationDepthwise = "quantization.depthwise"
    /// The blocks' GELU in an int8 file: "exact", "quadratic" (`gelu_quadratic`) or "quadratic and exact".
    public static let quantizationGELU = "quantization.gelu"
    /// The layers with bfloat16 / float16 weights (`--bf16`, `--fp16`).
    public static let quantizationBFloat16Layers = "quantization.bfloat16_layers"
    public static let quantizationFloat16Layers = "quantization.float16_layers"
    /// The key of the layers with `dtype` weights: one of the two above.
    public static func quantizationHalfLayers(_ dtype: DType) -> String {
        dtype == .float16 ? quantizationFloat16Layers : quantizationBFloat16Layers
    }

    /// Every standard key, in the order of Formats/CNX.md's table (the spec test checks that the
    /// two lists agree).
    public static let all: [String] =
        [
            architecture, variant, family, classNames, depths, dims, classes, features, outputs, stem, inputSize,
            mean, std, interpolation, cropPct, sourceFileName, sourceSHA256, sourceNamingScheme,
            sourcePretrainedTag, converterVersion, converterPasses, quantizationDescription,
            quantizationMethod, quantizationSamples, quantizationInt8Layers, quantizationFloatLayers,
            quantizationDepthwise, quantizationGELU, quantizationBFloat16Layers, quantizationFloat16Layers, resizeMode, cropOffset,
            rescaleFactor,
            sourceTransformersArchitecture, sourceShards,
        ] + assumed

    /// What a checkpoint reader assumed, with its source: `source.assumed.<name>`.
    public static let assumedPrefix = "source.assumed."
    public static let sourceTransformersArchitecture = "source.transformers_architecture"
    public static let sourceShards = "source.shards"
    /// Every `source.assumed.*` key a checkpoint reader writes.
    public static let assumed: [String] = [
        "norm", "eps", "eps.stem", "eps.downsample", "eps.head", "eps.features",
        "activation", "head_activation", "grn_eps",
    ].map { assumedPrefix + $0 }
}

extension Architecture {
    /// The standard `general.*` and `convnext.*` metadata entries describing this architecture.
    public var metadata: [String: MetadataValue] {
        var m: [String: MetadataValue] = [
            MetadataKey.architecture: .string("convnext"),
            MetadataKey.family: .string(family),
            MetadataKey.depths: .ints(depths.map { Int64($0) }),
            MetadataKey.dims: .ints(dims.map { Int64($0) }),
            MetadataKey.stem: .string(stem),
        ]
        if let variant { m[MetadataKey.variant] = .string(variant) }
        if let classes { m[MetadataKey.classes] = .int(Int64(classes)) }
        return m
    }
}
