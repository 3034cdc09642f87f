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

    /// c[m x n] = residual + act(a[m x k] · self + bias), act a CNX_ACT_* code.
    func multiply(
        _ a: UnsafePointer<Float>, rows: Int, lda: Int, bias: UnsafePointer<Float>?, act: Int32,
        residual: UnsafePointer<Float>?, ldr: Int, into c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if let widened {
            widened.multiply(a, rows: rows, lda: lda, bias: bias, act: act, residual: residual, ldr: ldr, into: c, ldc: ldc)
        } else if dtype == .bfloat16 {
            cnx_gemm_bf16(Int64(rows), Int64(n), Int64(k), a, Int64(lda), data, bias, act, residual, Int64(ldr), c, Int64(ldc))
        } else {
            cnx_gemm_f16(Int64(rows), Int64(n), Int64(k), a, Int64(lda), data, bias, act, residual, Int64(ldr), c, Int64(ldc))
        }
    }
}
