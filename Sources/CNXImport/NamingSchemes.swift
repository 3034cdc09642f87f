import Foundation

/// Where one checkpoint naming scheme keeps each parameter of a ConvNeXt (Formats/CHECKPOINTS.md
/// has the same tables). Names are templates: `{i}` is the stage, `{j}` the block within it, `{k}`
/// the module within the stem, and `{2i}`, `{2i+1}` are torchvision's interleaved `features`
/// indices. Every module has `.weight` and `.bias` unless said otherwise.
public struct NamingScheme: Sendable {
    public private(set) var name: String
    /// Who wrote the network this scheme names, for messages: "timm", "torchvision", ...
    public let origin: String
    /// One stage of blocks, no downsampling (the paper's isotropic ConvNeXt).
    public private(set) var isotropic: Bool
    /// Prefix of every key but the classifier's (transformers' `convnext.` / `convnextv2.`).
    public let modelPrefix: String
    /// The stem: with `{k}`, a sequence of modules (convolutions with 4-D weights, a norm
    /// with a 1-D weight; a missing index between two convolutions is an activation); without,
    /// one patchify convolution, then `stemNorm` when there is one.
    public private(set) var stem: String
    public let stemNorm: String?
    /// Downsample of stage i (before its blocks; required for i >= 1): norm, then convolution.
    public private(set) var downsampleNorm: String
    public private(set) var downsampleConv: String
    /// Prefix of block j of stage i.
    public private(set) var block: String
    /// Inside a block: depthwise convolution, norm, the two pointwise layers (Linear
    /// (out, in) or 1x1 convolution (out, in, 1, 1)).
    public let depthwise: String
    public let norm: String
    public let fc1: String
    public let fc2: String
    /// Inside a block: the layer scale's full name (a parameter, no `.weight`): (C) or (C, 1, 1).
    public let layerScale: String
    /// True when the network multiplies by the layer scale after permuting back to NCHW (timm,
    /// torchvision); false when before (the paper's code, transformers).
    public let layerScaleChannelsFirst: Bool
    /// Inside a block: ConvNeXt V2's GRN scale and shift, full names: (4C) or (1, 1, 1, 4C).
    public let grnScale: String?
    public let grnShift: String?
    /// The head: norm over the pooled features, then the classifier (classes, C). The
    /// classifier may be absent (a headless model: the output is the pooled, normed features).
    public let headNorm: String
    public let headFC: String
    /// timm's `head_norm_first`: a norm over the last feature map before pooling (`norm_pre`),
    /// and then no `head.norm`.
    public let headNormFirst: String?
    /// timm's `head_hidden_size`: a Linear and an activation between the head norm and the
    /// classifier (`head.pre_logits.fc`).
    public let headPreLogits: String?
    /// transformers' backbone: a norm on each stage output it gives, `{name}` being `stem`,
    /// `stage1`...`stage4`.
    public let featureNorm: String?
    /// True when the network may use norms without a bias (timm's RMS and simple norms).
    public let allowsBiasFreeNorms: Bool
    /// True when the head pools with `x.mean([-2, -1])` and norms the (N, C) result (the paper's
    /// code, transformers): ReduceMean then LayerNormalization in the export, rather than
    /// GlobalAveragePool and a channels-first norm (timm, torchvision).
    public let headPoolsByMean: Bool

    /// The schemes this reader knows, in the order ties are broken.
    public static let all: [NamingScheme] = [
        timm, torchvision, reference, referenceIsotropic,
        transformers(prefix: "convnext."), transformers(prefix: "convnextv2."),
        transformers(prefix: ""),
    ]

    /// timm (`timm.models.convnext.ConvNeXt`), including conv_mlp models, V2 (`use_grn`), the
    /// overlapping stems (`stem_type` overlap, overlap_tiered, overlap_act), `head_norm_first`,
    /// `head_hidden_size` and the RMS / simple norms.
    public static let timm = NamingScheme(
        name: "timm", origin: "timm", isotropic: false, modelPrefix: "", stem: "stem.{k}", stemNorm: nil,
        downsampleNorm: "stages.{i}.downsample.0", downsampleConv: "stages.{i}.downsample.1",
        block: "stages.{i}.blocks.{j}.", depthwise: "conv_dw", norm: "norm", fc1: "mlp.fc1", fc2: "mlp.fc2",
        layerScale: "gamma", layerScaleChannelsFirst: true, grnScale: "mlp.grn.weight", grnShift: "mlp.grn.bias",
        headNorm: "head.norm", headFC: "head.fc", headNormFirst: "norm_pre", headPreLogits: "head.pre_logits.fc",
        featureNorm: nil, allowsBiasFreeNorms: true, headPoolsByMean: false)

    /// torchvision (`torchvision.models.convnext.ConvNeXt`): `features` interleaves stages and
    /// downsamples; a block is `block` = (dwconv, permute, norm, linear, GELU, linear, permute).
    public static let torchvision = NamingScheme(
        name: "torchvision", origin: "torchvision", isotropic: false, modelPrefix: "", stem: "features.0.{k}", stemNorm: nil,
        downsampleNorm: "features.{2i}.0", downsampleConv: "features.{2i}.1",
        block: "features.{2i+1}.{j}.", depthwise: "block.0", norm: "block.2", fc1: "block.3", fc2: "block.5",
        layerScale: "layer_scale", layerScaleChannelsFirst: true, grnScale: nil, grnShift: nil,
        headNorm: "classifier.0", headFC: "classifier.2", headNormFirst: nil, headPreLogits: nil,
        featureNorm: nil, allowsBiasFreeNorms: false, headPoolsByMean: false)

    /// The paper's reference code (facebookresearch/ConvNeXt `models/convnext.py`, and
    /// ConvNeXt-V2 `models/convnextv2.py`): the stem is `downsample_layers.0`.
    public static let reference = NamingScheme(
        name: "reference", origin: "the paper's code", isotropic: false, modelPrefix: "", stem: "downsample_layers.0.{k}", stemNorm: nil,
        downsampleNorm: "downsample_layers.{i}.0", downsampleConv: "downsample_layers.{i}.1",
        block: "stages.{i}.{j}.", depthwise: "dwconv", norm: "norm", fc1: "pwconv1", fc2: "pwconv2",
        layerScale: "gamma", layerScaleChannelsFirst: false, grnScale: "grn.gamma", grnShift: "grn.beta",
        headNorm: "norm", headFC: "head", headNormFirst: nil, headPreLogits: nil,
        featureNorm: nil, allowsBiasFreeNorms: false, headPoolsByMean: true)

    /// The paper's isotropic ConvNeXt (`models/convnext_isotropic.py`): the same code's names
    /// inside a block and in the head, but a 16x16 patchify stem without a norm and one run of
    /// blocks, no downsampling.
    public static let referenceIsotropic: NamingScheme = {
        var s = reference
        s.name = "reference (isotropic)"
        s.isotropic = true
        s.stem = "stem"
        (s.downsampleNorm, s.downsampleConv) = ("", "")
        s.block = "blocks.{j}."
        return s
    }()

    /// Hugging Face transformers (`ConvNextModel`, `ConvNextV2Model` and their
    /// `...ForImageClassification` and `...Backbone`): `prefix` is `convnext.` or `convnextv2.`
    /// for the classifier (whose own layer is `classifier`), empty for the bare model and the
    /// backbone (whose stage outputs go through `hidden_states_norms.<stage>`).
    public static func transformers(prefix: String) -> NamingScheme {
        NamingScheme(
            name: "transformers", origin: "transformers", isotropic: false, modelPrefix: prefix,
            stem: "embeddings.patch_embeddings", stemNorm: "embeddings.layernorm",
            downsampleNorm: "encoder.stages.{i}.downsampling_layer.0", downsampleConv: "encoder.stages.{i}.downsampling_layer.1",
            block: "encoder.stages.{i}.layers.{j}.", depthwise: "dwconv", norm: "layernorm", fc1: "pwconv1", fc2: "pwconv2",
            layerScale: "layer_scale_parameter", layerScaleChannelsFirst: false, grnScale: "grn.weight", grnShift: "grn.bias",
            headNorm: "layernorm", headFC: "classifier", headNormFirst: nil, headPreLogits: nil,
            featureNorm: prefix.isEmpty ? "hidden_states_norms.{name}" : nil, allowsBiasFreeNorms: false, headPoolsByMean: true)
    }

    /// A template with its indices filled in, and the model prefix in front.
    func expand(_ template: String, i: Int = 0, j: Int = 0, k: Int = 0) -> String {
        modelPrefix + Self.expand(template, i: i, j: j, k: k)
    }

    /// A template with its indices filled in.
    static func expand(_ template: String, i: Int = 0, j: Int = 0, k: Int = 0) -> String {
        template.replacingOccurrences(of: "{2i+1}", with: String(2 * i + 1))
            .replacingOccurrences(of: "{2i}", with: String(2 * i))
            .replacingOccurrences(of: "{i}", with: String(i))
            .replacingOccurrences(of: "{j}", with: String(j))
            .replacingOccurrences(of: "{k}", with: String(k))
    }
}
