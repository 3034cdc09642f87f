import Foundation

/// Where one checkpoint naming scheme keeps each parameter of a ConvNeXt (Formats/CHECKPOINTS.md
/// has the same tables). Names are templates: `{i}` is the stage, `{j}` the block within it, `{k}`
/// the module within the stem, and `{2i}`, `{2i+1}` are torchvision's interleaved `features`
/// indices. Every module has `.weight` and `.bias` unless said otherwise.
public struct NamingScheme: Sendable {
    public let name: String
    /// One stage of blocks, no downsampling (the paper's isotropic ConvNeXt).
    public let isotropic: Bool
    /// The stem: with `{k}`, a sequence of modules (convolutions with 4-D weights, a LayerNorm
    /// with a 1-D weight; a missing index between two convolutions is a GELU); without, one
    /// patchify convolution and no norm.
    public let stem: String
    /// Downsample of stage i (before its blocks; required for i >= 1): LayerNorm, then convolution.
    public let downsampleNorm: String
    public let downsampleConv: String
    /// Prefix of block j of stage i.
    public let block: String
    /// Inside a block: depthwise convolution, LayerNorm, the two pointwise layers (Linear
    /// (out, in) or 1x1 convolution (out, in, 1, 1)).
    public let depthwise: String
    public let norm: String
    public let fc1: String
    public let fc2: String
    /// Inside a block: the layer scale's full name (a parameter, no `.weight`): (C) or (C, 1, 1).
    public let layerScale: String
    /// Inside a block: ConvNeXt V2's GRN scale and shift, full names: (4C) or (1, 1, 1, 4C).
    public let grnScale: String?
    public let grnShift: String?
    /// The head: LayerNorm over the pooled features, then the classifier (classes, C).
    public let headNorm: String
    public let headFC: String

    /// The schemes this reader knows, in the order ties are broken.
    public static let all: [NamingScheme] = [timm, torchvision, reference, referenceIsotropic]

    /// timm (`timm.models.convnext.ConvNeXt`), including conv_mlp models, V2 (`use_grn`) and the
    /// overlapping stems (`stem_type` overlap, overlap_tiered, overlap_act).
    public static let timm = NamingScheme(
        name: "timm", isotropic: false, stem: "stem.{k}",
        downsampleNorm: "stages.{i}.downsample.0", downsampleConv: "stages.{i}.downsample.1",
        block: "stages.{i}.blocks.{j}.", depthwise: "conv_dw", norm: "norm", fc1: "mlp.fc1", fc2: "mlp.fc2",
        layerScale: "gamma", grnScale: "mlp.grn.weight", grnShift: "mlp.grn.bias",
        headNorm: "head.norm", headFC: "head.fc")

    /// torchvision (`torchvision.models.convnext.ConvNeXt`): `features` interleaves stages and
    /// downsamples; a block is `block` = (dwconv, permute, norm, linear, GELU, linear, permute).
    public static let torchvision = NamingScheme(
        name: "torchvision", isotropic: false, stem: "features.0.{k}",
        downsampleNorm: "features.{2i}.0", downsampleConv: "features.{2i}.1",
        block: "features.{2i+1}.{j}.", depthwise: "block.0", norm: "block.2", fc1: "block.3", fc2: "block.5",
        layerScale: "layer_scale", grnScale: nil, grnShift: nil,
        headNorm: "classifier.0", headFC: "classifier.2")

    /// The paper's reference code (facebookresearch/ConvNeXt `models/convnext.py`, and
    /// ConvNeXt-V2 `models/convnextv2.py`): the stem is `downsample_layers.0`.
    public static let reference = NamingScheme(
        name: "reference", isotropic: false, stem: "downsample_layers.0.{k}",
        downsampleNorm: "downsample_layers.{i}.0", downsampleConv: "downsample_layers.{i}.1",
        block: "stages.{i}.{j}.", depthwise: "dwconv", norm: "norm", fc1: "pwconv1", fc2: "pwconv2",
        layerScale: "gamma", grnScale: "grn.gamma", grnShift: "grn.beta",
        headNorm: "norm", headFC: "head")

    /// The paper's isotropic ConvNeXt (`models/convnext_isotropic.py`): a 16x16 patchify stem
    /// without a norm, one run of blocks.
    public static let referenceIsotropic = NamingScheme(
        name: "reference (isotropic)", isotropic: true, stem: "stem",
        downsampleNorm: "", downsampleConv: "",
        block: "blocks.{j}.", depthwise: "dwconv", norm: "norm", fc1: "pwconv1", fc2: "pwconv2",
        layerScale: "gamma", grnScale: "grn.gamma", grnShift: "grn.beta",
        headNorm: "norm", headFC: "head")

    /// A template with its indices filled in.
    static func expand(_ template: String, i: Int = 0, j: Int = 0, k: Int = 0) -> String {
        template.replacingOccurrences(of: "{2i+1}", with: String(2 * i + 1))
            .replacingOccurrences(of: "{2i}", with: String(2 * i))
            .replacingOccurrences(of: "{i}", with: String(i))
            .replacingOccurrences(of: "{j}", with: String(j))
            .replacingOccurrences(of: "{k}", with: String(k))
    }
}
