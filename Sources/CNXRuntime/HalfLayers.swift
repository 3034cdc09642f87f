import CKernels
import CNXGraph
import CNXReference

/// A GEMM layer with bfloat16 or float16 weights (cnx_half.h), packed once at load: the weight
/// tensor's dtype is the layer's precision. Activations, accumulation and the epilogue are
/// float32; bfloat16 layers compute with vdpbf16ps where the CPU has it (the activations rounded
/// to bfloat16 on the fly), float16 layers and bfloat16 ones elsewhere widen the weights: in the
/// kernel with AVX-512, or once at load into the float32 GEMM's panels on the `float` path (AVX2,
/// NEON), which computes the same as the widened twin.
final class PackedHalfMatrix: @unchecked Sendable {
    let k: Int, n: Int
    let dtype: DType
    let data: UnsafeMutablePointer<UInt16>
    /// On the `float` path: the weights widened to float32, in the float GEMM's layout.
    private let widened: PackedMatrix?

    init(_ t: Tensor, name: String) throws {
        guard t.dtype == .bfloat16 || t.dtype == .float16, t.shape.count == 2 else {
            throw CNXError("weight '\(name)' must be a 2-D bfloat16 or float16 tensor")
        }
        k = t.shape[0]
        n = t.shape[1]
        dtype = t.dtype
        if cnx_hpath_current() == CNX_HPATH_FLOAT, let wide = t.widenedHalf() {
            widened = PackedMatrix(wide)
            data = UnsafeMutablePointer<UInt16>.allocate(capacity: 1)
            return
        }
        widened = nil
        let halves = max(cnx_hgemm_packed_b_halves(Int64(k), Int64(n)), 32)
        data = UnsafeMutableRawPointer.allocate(byteCount: halves * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: halves)
        t.withUnsafeBytes { raw in
            let bits = raw.assumingMemoryBound(to: UInt16.self).baseAddress
            if dtype == .bfloat16 {
                cnx_hgemm_pack_b_bf16(bits, Int64(k), Int64(n), data)
            } else {
                cnx_hgemm_pack_b_f16(bits, Int64(k), Int64(n), data)
            }
        }
    }

    deinit { data.deallocate() }

    /// The layer takes activations already rounded to bfloat16 (`multiply16`) on this CPU: a
    /// bfloat16 weight on the dot path (AVX512_BF16), where that is what the kernel would do to
    /// float activations anyway, so both give the same bits.
    var takesBF16Inputs: Bool { dtype == .bfloat16 && widened == nil && cnx_hpath_current() == CNX_HPATH_AVX512_BF16 }

    /// c[:, columns] (float32 into `c`, or bfloat16 into `c16`) = residual + act(a · self + bias)
    /// for bfloat16 activations `a` (cnx_gemm_bf16_a16); ldc is the output's row stride.
    func multiply16(
        _ a: UnsafePointer<UInt16>, rows: Int, lda: Int, columns: Range<Int>, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>?, into16 c16: UnsafeMutablePointer<UInt16>?,
        ldc: Int
    ) {
        let j0 = columns.lowerBound, kp2 = k + (k & 1)
        cnx_gemm_bf16_a16(
            Int64(rows), Int64(columns.count), Int64(k), a, Int64(lda), data + j0 * kp2, bias.map { $0 + j0 }, act,
            residual.map { $0 + j0 }, Int64(ldr), c.map { $0 + j0 }, c16.map { $0 + j0 }, Int64(ldc))
    }

    /// c[:, columns] = residual + act(a · self + bias) (ColumnGEMM, FastExecutor.swift).
    func multiply(
        _ a: UnsafePointer<Float>, rows: Int, lda: Int, columns: Range<Int>, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if let widened {
            widened.multiply(
                a, rows: rows, lda: lda, columns: columns, bias: bias, act: act, residual: residual, ldr: ldr, into: c, ldc: ldc)
            return
        }
        let j0 = columns.lowerBound, kp2 = k + (k & 1)
        let (m, w, kk) = (Int64(rows), Int64(columns.count), Int64(k))
        let (b, r, out) = (bias.map { $0 + j0 }, residual.map { $0 + j0 }, c + j0)
        if dtype == .bfloat16 {
            cnx_gemm_bf16(m, w, kk, a, Int64(lda), data + j0 * kp2, b, act, r, Int64(ldr), out, Int64(ldc))
        } else {
            cnx_gemm_f16(m, w, kk, a, Int64(lda), data + j0 * kp2, b, act, r, Int64(ldr), out, Int64(ldc))
        }
    }
}
