import CKernels
import CNXGraph

/// The norm a fused operation applies (its `norm` attribute, Formats/CNX.md).
public enum FusedNormKind: String, Sendable {
    /// (x - mean) / sqrt(biased var + eps): LayerNorm, the default.
    case layer
    /// x / sqrt(mean(x²) + eps): timm's RmsNorm.
    case rms
    /// x / sqrt(unbiased var + eps), not centred: timm's SimpleNorm.
    case simple
    /// No norm (a stem convolution without one: the isotropic model's, an overlapping stem's first).
    case none
}

/// The fast kernels' norms.
package enum FusedAttributes {
    /// The fast kernels' norm over `rows` rows of `c` values (y may be x).
    package static func normRows(
        _ kind: FusedNormKind, _ x: UnsafePointer<Float>, rows: Int, c: Int, eps: Float,
        gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>
    ) {
        switch kind {
        case .layer: cnx_layernorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .rms: cnx_rmsnorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .simple: cnx_simplenorm_rows_f32(x, Int64(rows), Int64(c), eps, gamma, beta, y)
        case .none: if UnsafePointer(y) != x { y.update(from: x, count: rows * c) }
        }
    }
}
