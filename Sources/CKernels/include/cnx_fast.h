// Fast CPU kernels of the ConvNeXt runtime: the pointwise GEMM with a fused epilogue, the
// depthwise convolution, LayerNorm and GELU. Float32, row-major, activations NHWC.
//
// Every public function dispatches at run time between an AVX-512 version (16-lane zmm), an
// AVX2 + FMA version (8-lane ymm) and a portable scalar version. The scalar versions are also
// exported under a `_ref` name: they are the specification the SIMD versions are tested against.
// All functions are single-threaded and allocate nothing: callers thread over rows.
// The SIMD code uses per-function target attributes, so no -mavx flags are needed; off x86, or
// built with -DCNX_NO_SIMD, only the scalar paths exist.
#ifndef CNX_FAST_H
#define CNX_FAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Instruction-set dispatch

/// The kernel paths, from slowest to fastest. The numbers are stable.
typedef enum {
    CNX_ISA_SCALAR = 0,
    CNX_ISA_AVX2 = 1,    // AVX2 + FMA, with OS support for ymm state
    CNX_ISA_AVX512 = 2,  // AVX-512 F/BW/DQ/VL, with OS support for zmm and mask state
    CNX_ISA_NEON = 3,    // AArch64 Advanced SIMD with FMA (every arm64 CPU); x86 paths absent
} cnx_isa;

/// The best path this CPU and OS support (cpuid + xgetbv), lowered to the environment variable
/// CNX_ISA (`scalar`, `avx2`, `avx512` or `neon`) when that is set. Never a path the CPU lacks.
cnx_isa cnx_isa_detect(void);

/// The path the kernels use now: cnx_isa_detect() on first use, unless forced. Thread-safe.
cnx_isa cnx_isa_current(void);

/// Forces a path (for tests and benchmarks), clamped to what the CPU supports (a path of the
/// other architecture gives scalar); -1 returns to automatic detection. Safe at any time: a call already running finishes on its path.
void cnx_isa_force(int isa);

/// "scalar", "avx2", "avx512", "neon" (or "unknown").
const char *cnx_isa_name(cnx_isa isa);

// MARK: - GEMM with fused epilogue (the pointwise layers)

/// Width of a packed-B panel, in columns. The same layout serves every path.
#define CNX_GEMM_PANEL 32

/// Floats the packed form of a (k x n) B needs: ceil(n / 32) panels of k x 32 floats.
size_t cnx_gemm_packed_b_floats(int64_t k, int64_t n);

/// Packs B (k x n, row-major, leading dimension n) into panels of 32 columns, each K-major
/// (panel p holds B[0..k)[32p..32p+32) row after row), zero-padding the last panel. Done once at
/// load time. The packed buffer is best 64-byte aligned (not required).
void cnx_gemm_pack_b(const float *b, int64_t k, int64_t n, float *packed);

/// C[i][j] = residual[i][j] + act(sum_k A[i][k] B[k][j] + bias[j]),  0 <= i < m, 0 <= j < n.
///   a: m x k, leading dimension lda (rows contiguous). packed_b: from cnx_gemm_pack_b(b, k, n).
///   bias: n values or NULL. act: 0 = none, 1 = exact GELU 0.5 x (1 + erf(x / sqrt 2)), as
///   cnx_gelu_inplace_f32 computes it.
///   residual: NULL or m x n with leading dimension ldr; it may be C itself (then ldr == ldc),
///   but must not overlap C in any other way. C must not overlap A.
/// k == 0 gives C = residual + act(bias).
/// Column ranges: columns [j0, j0 + w) alone (say, to split a layer with few rows across threads
/// by columns) are n = w, packed_b + (j0 / 32) * 32 * k, bias + j0, residual + j0, c + j0, with
/// j0 a multiple of 32. Row ranges are a + i0 * lda, residual + i0 * ldr, c + i0 * ldc.
void cnx_gemm_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *packed_b, const float *bias, int act, const float *residual,
                  int64_t ldr, float *c, int64_t ldc);

/// The scalar specification of cnx_gemm_f32 (same arguments, same packed B).
void cnx_gemm_f32_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc);

// MARK: - Depthwise convolution

/// Depthwise k x k convolution (k odd), stride 1, zero padding (k - 1) / 2, over one NHWC image
/// x[h][w][c] with weight[k][k][c] and bias[c] (bias may be NULL). Computes output rows
/// [y0, y1) only, into y, laid out like x (the full image buffer). y must not overlap x.
/// k = 3, 5 and 7 have register-blocked kernels; other odd k take a slower general path.
void cnx_dwconv_nhwc_rows_f32(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                              const float *weight, const float *bias, float *y, int64_t y0,
                              int64_t y1);
void cnx_dwconv_nhwc_rows_f32_ref(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                                  const float *weight, const float *bias, float *y, int64_t y0,
                                  int64_t y1);

// MARK: - LayerNorm and GELU

/// y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta over each of `rows` rows of c values
/// (biased variance, two passes). gamma and beta may each be NULL (1 and 0). y may equal x.
void cnx_layernorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                            const float *gamma, const float *beta, float *y);
void cnx_layernorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                                const float *gamma, const float *beta, float *y);

/// x = 0.5 x (1 + erf(x / sqrt 2)) in place. The SIMD paths compute max(x, 0) - |x| Phi(-|x|)
/// with Phi(-a) piecewise polynomial (within 4e-8 of exact GELU beyond the float rounding); the
/// reference uses libm's erff.
void cnx_gelu_inplace_f32(float *x, int64_t count);
void cnx_gelu_inplace_f32_ref(float *x, int64_t count);

#ifdef __cplusplus
}
#endif

#endif
