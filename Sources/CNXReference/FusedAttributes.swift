import CKernels
import CNXGraph

/// The norm a fused operation applies (its `norm` attribute, Formats/CNX.md).
package enum NormKind: String {
    /// (x - mean) / sqrt(biased var + eps): LayerNorm, the default.
    case layer
    /// x / sqrt(mean(x²) + eps): timm's RmsNorm.
    case rms
    /// x / sqrt(unbiased var + eps), not centred: timm's SimpleNorm.
    case simple
    /// No norm (a stem convolution without one: the isotropic model's, an overlapping stem's first).
    case none
}

/// What the fused operations' `activation` and `norm` attributes say, checked.
package enum FusedAttributes {
    /// The CNX_ACT_* code of `node`'s `activation` (absent: `absent`). Throws on a name it does
    /// not know rather than run something else.
    package static func activation(_ node: Node, absent: Int32) throws -> Int32 {
        guard let name = node.string("activation") else { return absent }
        switch name {
        case "gelu": return CNX_ACT_GELU
        case "gelu_tanh": return CNX_ACT_GELU_TANH
        case "silu": return CNX_ACT_SILU
        default: throw CNXError("unknown activation '\(name)' (gelu, gelu_tanh or silu)")
        }
    }

    /// The node's norm (absent: LayerNorm). `none` only where the operation allows it (the stem).
    package static func norm(_ node: Node, allowNone: Bool = false) throws -> NormKind {
        guard let name = node.string("norm") else { return .layer }
        guard let kind = NormKind(rawValue: name), allowNone || kind != .none else {
            throw CNXError("unknown norm '\(name)' (layer, rms, simple\(allowNone ? " or none" : ""))")
        }
        return kind
    }

    /// The fast kernels' norm over `rows` rows of `c` values (y may be x).
    package static func normRows(_ kind: NormKind, _ x: UnsafePointer<Float>, rows: Int, c: Int, eps: Float,
                         gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        switch kind {
        case .layer: cnx_layernorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .rms: cnx_rmsnorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .simple: cnx_simplenorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .none: if UnsafePointer(y) != x { y.update(from: x, count: rows * c) }
        }
    }
}
