// Fast CPU kernels of the ConvNeXt runtime: the pointwise GEMM with a fused epilogue, the
// depthwise convolution, the norms (LayerNorm, RMS norm, simple norm) and the activations (exact
// and tanh GELU, SiLU). Float32, row-major, activations NHWC.
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

// MARK: - Activation codes

/// The `int act` argument of cnx_gemm_f32, cnx_activation_inplace_f32 and the int8 epilogues
/// (cnx_qgemm.h). Any other value means none.
#define CNX_ACT_NONE 0
/// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (nn.GELU(), timm's default `gelu`).
#define CNX_ACT_GELU 1
/// tanh-approximated GELU, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
/// (nn.GELU(approximate='tanh'), timm's `gelu_tanh`).
#define CNX_ACT_GELU_TANH 2
/// SiLU (swish), x sigmoid(x) = x / (1 + exp(-x)) (nn.SiLU(), timm's `silu` / `swish`).
#define CNX_ACT_SILU 3
/// The quadratic GELU: max(x, 0) - |x| P(|x|), P piecewise quadratic on 32 intervals of [0, 6)
/// (the table cnx_gelu_q32d2 in gelu_table.c, from scripts/gelu-table.py), evaluated in float in one
/// fixed order, so every path gives the same bits; within 1.12e-5 of exact GELU. For layers
/// whose output is rounded to a coarser step right after (int8 u8 codes): two coefficients fewer
/// than the exact GELU's table.
#define CNX_ACT_GELU_QUADRATIC 4

// MARK: - Instruction-set dispatch

/// The kernel paths, from slowest to fastest. The numbers are stable.
typedef enum {
    CNX_ISA_SCALAR = 0,
    CNX_ISA_AVX2 = 1,    // AVX2 + FMA, with OS support for ymm state
    CNX_ISA_AVX512 = 2,  // AVX-512 F/BW/DQ/VL, with OS support for zmm and mask state
    CNX_ISA_NEON = 3,    // AArch64 Advanced SIMD with FMA (every arm64 CPU); x86 paths absent
} cnx_isa;

/// The best path the CPU's features allow (cnx_cpu_features in cnx_cpu.h: what the CPU and OS
/// support, lowered by the environment variable CNX_ISA, one level for every kernel family:
/// `scalar`, `avx2`, `avx512`, `neon`, ...). Never a path the CPU lacks.
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
///   bias: n values or NULL. act: a CNX_ACT_* code, computed as cnx_activation_inplace_f32 on the
///   same path computes it (bit for bit).
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

// MARK: - Norms

/// y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta over each of `rows` rows of c values
/// (biased variance, two passes). gamma and beta may each be NULL (1 and 0). y may equal x.
void cnx_layernorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                            const float *gamma, const float *beta, float *y);
void cnx_layernorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                                const float *gamma, const float *beta, float *y);
/// The same rows rounded to bfloat16 as they are written: the bits of cnx_layernorm_rows_f32
/// followed by cnx_round_bf16, without the float rows. Runs only where the bfloat16 dot path
/// does (AVX-512 BF16 chosen by cnx_hpath_current): returns 1, or 0 having written nothing (the
/// caller then norms in float32 and rounds).
int cnx_layernorm_rows_bf16(const float *x, int64_t rows, int64_t c, float eps, const float *gamma, const float *beta,
                            uint16_t *y);

/// RMS norm: y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gamma + beta over each row of c values
/// (not centred; eps inside the root). gamma and beta may each be NULL (1 and 0). y may equal x.
/// timm's RmsNorm / RmsNorm2d (`rmsnorm`, `rmsnorm2d`: convnext_atto_rms) compute exactly this
/// with gamma = weight and no beta (x * rsqrt(mean(x^2) + eps) * weight), as does
/// torch.nn.functional.rms_norm.
/// Accuracy: the reference sums in double; the SIMD paths sum the squares in float over 64 (AVX-512)
/// or 32 (AVX2) partial sums, all terms positive, so the mean square is within (c / 32 + 8) 2^-24
/// relative of exact (worst case) and y within half that plus 4 roundings, relative to
/// |x rstd gamma| + |beta| (the bound Tests/CKernelsTests/FastNormTests.swift asserts; measured:
/// at most 4 * 2^-24 = 2.4e-7 on every path for c from 3 to 3072, rows of mean 0 to 50).
void cnx_rmsnorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                          const float *gamma, const float *beta, float *y);
void cnx_rmsnorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                              const float *gamma, const float *beta, float *y);

/// Simple norm: y[r] = x[r] / sqrt(var_unbiased(x[r]) + eps) * gamma + beta, with
/// var_unbiased = sum (x - mean)^2 / (c - 1): scaled by the standard deviation but NOT centred.
/// This is timm's SimpleNorm / SimpleNorm2d (`simplenorm`: convnext_zepto_rms), whose
/// torch.var(x, dim) uses Bessel's correction by default; it differs from the RMS norm above
/// (which divides by the root mean square about zero) unless the row mean is zero. timm gives
/// it a weight and no bias: gamma = weight, beta = NULL. c == 1 gives NaN, as torch.var does
/// (0 / 0). gamma and beta may each be NULL (1 and 0). y may equal x. Two passes (mean, then the
/// squares about it, corrected by (sum (x - mean))^2 / c for the rounding of the mean, so rows far
/// from zero mean lose nothing); accuracy as the RMS norm's.
void cnx_simplenorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                             const float *gamma, const float *beta, float *y);
void cnx_simplenorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                                 const float *gamma, const float *beta, float *y);

// MARK: - Activations

/// x = act(x) in place, act a CNX_ACT_* code (other values: x unchanged).
/// The scalar reference is the formula in float with libm: erff for GELU; for tanh GELU and SiLU
/// the identity 0.5 (1 + tanh(z)) = sigmoid(2 z) gives y = x / (1 + expf(-t)) with
/// t = x (C1 + C2 x^2), C1 = 2 sqrt(2/pi), C2 = 0.044715 C1 (tanh GELU) or t = x (SiLU), which
/// keeps its relative accuracy where y is tiny (x << 0, where 1 + tanh cancels).
/// The SIMD paths: GELU as cnx_gelu_inplace_f32; tanh GELU and SiLU the same formula, t bit for
/// bit, with a vectorised exp (within 1 ulp; inputs clamped to [-104, 104]) and one division.
/// Accuracy, measured on 8.8 million floats spread over [-20, 20] against the formula in extended
/// precision (u = 2^-24; Tests/CKernelsTests/FastActivationTests.swift asserts the bounds in
/// brackets, point by point, on 17,000 inputs):
///   - SIMD vs reference: relative 3.0e-7 (5 u) [6 u] where |y| >= 1e-30; below, 1e-36 absolute
///     (exp(-t) overflows past t = -88.7, a tiny y may come out 0) [1e-35].
///   - SiLU, reference and SIMD: relative 1.5e-7 of exact (2.6 u) [4 u], where |y| >= 1e-30.
///   - tanh GELU, reference and SIMD: relative 2.8 (1 + |t|) u of exact [(4 + 5 |t|) u]: the float
///     rounding of t (a few u) is magnified |t| times by exp, which matters only far out in the
///     negative tail, where y is tiny (absolute error at most 5.2e-7 over [-20, 20], 1 ulp of the
///     largest y; 0.5 x (1 + tanh) in float, as PyTorch computes it, loses all relative accuracy
///     there instead, to 1 + tanh cancelling).
/// Large |x|: +inf -> +inf, large positive x -> x, large negative x -> -0 (exp(-t) overflows:
/// |y| < 1e-36 lost), -inf -> NaN (as x * sigmoid(x) and 0.5 x (1 + tanh(.)) in PyTorch); NaN ->
/// NaN.
void cnx_activation_inplace_f32(float *x, int64_t count, int act);
void cnx_activation_inplace_f32_ref(float *x, int64_t count, int act);

/// x = 0.5 x (1 + erf(x / sqrt 2)) in place: cnx_activation_inplace_f32(x, count, CNX_ACT_GELU).
/// The SIMD paths compute max(x, 0) - |x| Phi(-|x|) with Phi(-a) piecewise polynomial (within
/// 4e-8 of exact GELU beyond the float rounding); the reference uses libm's erff.
void cnx_gelu_inplace_f32(float *x, int64_t count);
void cnx_gelu_inplace_f32_ref(float *x, int64_t count);

// MARK: - Stem patches

/// The patch matrix of output row `oy` of a k x k convolution (stride, zero padding `pad` on
/// every side) for the GEMM of a cnx.Stem: `ow` rows of cin * k * k floats (Formats/CNX.md):
///   nhwc == 0: x is one NCHW image [cin, h, w], row (c * k + ky) * k + kx <- x[c, iy, ix];
///   nhwc != 0: x is one NHWC map [h, w, cin], row (ky * k + kx) * cin + c <- x[iy, ix, c];
/// iy = oy * stride - pad + ky, ix = ox * stride - pad + kx, 0 outside the input. Exact (copies).
/// The `_ref` version is the element-by-element specification.
void cnx_stem_patches_f32(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k,
                          int64_t stride, int64_t pad, int64_t oy, int64_t ow, float *patches);
void cnx_stem_patches_f32_ref(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k,
                              int64_t stride, int64_t pad, int64_t oy, int64_t ow, float *patches);

// MARK: - Layout

/// y[ch * ldy + r] = x[r * c + ch] for r < rows, ch < c: `rows` channel vectors (NHWC pixels)
/// written as channel planes (NCHW; ldy >= rows, the plane stride). Exact (a copy).
void cnx_rows_to_planes_f32(const float *x, int64_t rows, int64_t c, float *y, int64_t ldy);

#ifdef __cplusplus
}
#endif

#endif
