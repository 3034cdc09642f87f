// Half-precision weights for the pointwise GEMM: bfloat16 and float16 weights, float32
// activations, float32 accumulation, and the same fused epilogue as cnx_gemm_f32 (bias, then
// GELU / tanh GELU / SiLU, then a residual that may be C itself: a block's layer scale is folded
// into its second weight, so the residual add is the whole block epilogue).
//
// Three computations, each with a scalar twin that is its specification:
//   - bf16 dot (cnx_gemm_bf16 on CPUs with AVX512_BF16): the activations are rounded to bfloat16
//     on the fly and pairs of products are accumulated by vdpbf16ps. Its twin,
//     cnx_gemm_bf16_dot_ref, emulates the instruction: the rounding of A (round to nearest even,
//     denormal inputs flushed to zero, as vcvtne2ps2bf16 does), then per pair of k the odd
//     product added first and the even one second, each addition rounded to float (bf16 x bf16
//     products are exact in float) with denormal results flushed to zero. Measured on Zen 5:
//     bit for bit equal to the instruction on 2 million random pairs (products of normal
//     numbers); so without an activation the path and its twin agree exactly, with one they
//     differ by the activation's own SIMD-vs-libm difference (cnx_fast.h: within 6 ulp).
//   - bf16 widened (CPUs without AVX512_BF16, or forced): weights widened to float by a shift,
//     activations used as they are, float FMA in k order. Twin: cnx_gemm_bf16_wide_ref.
//   - float16 (F16C widening, float FMA in k order). Twin: cnx_gemm_f16_ref.
// The widened and float16 paths agree with their twins bit for bit without an activation.
//
// Layouts (one packed form per dtype, shared by every path of that dtype): panels of 32 columns,
// the last zero-padded, K padded to an even count kp2 = k + (k & 1) with zero rows; a panel is
// kp2 x 32 halves. bfloat16: pair rows, row q holding (B[2q][j], B[2q+1][j]) for j = 0..31,
// so one 32-bit lane is one column's pair (vdpbf16ps's operand). float16: K-major rows of 32.
// Column ranges: columns [j0, j0 + w) with j0 a multiple of 32 are n = w,
// packed + (j0 / 32) * 32 * kp2, bias + j0, residual + j0, c + j0, as for cnx_gemm_f32.
#ifndef CNX_HALF_H
#define CNX_HALF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Conversions

/// float -> bfloat16, round to nearest even; NaN stays NaN (quietened, sign kept); overflow
/// gives infinity; denormals are rounded like any other value (not flushed).
uint16_t cnx_bf16_from_f32(float x);
/// bfloat16 -> float (exact).
float cnx_f32_from_bf16(uint16_t h);
/// float -> IEEE binary16, round to nearest even, with binary16 denormals; magnitudes from
/// 65520 up give infinity; NaN stays NaN (quietened, sign and top payload bits kept).
uint16_t cnx_f16_from_f32(float x);
/// IEEE binary16 -> float (exact).
float cnx_f32_from_f16(uint16_t h);

/// Whole arrays of the above (load and conversion time; scalar).
void cnx_bf16_from_f32_n(const float *x, int64_t count, uint16_t *y);
void cnx_f32_from_bf16_n(const uint16_t *x, int64_t count, float *y);
void cnx_f16_from_f32_n(const float *x, int64_t count, uint16_t *y);
void cnx_f32_from_f16_n(const uint16_t *x, int64_t count, float *y);

// MARK: - Paths

/// The half-precision GEMM paths. The numbers are stable.
typedef enum {
    CNX_HPATH_SCALAR = 0,       // the twins: bf16 widened, float16
    CNX_HPATH_FLOAT = 1,        // AVX2 or NEON without AVX-512: here the twins too; a runtime widens
                                // the weights once, at load, for the float32 GEMM (cnx_gemm_f32 on
                                // cnx_isa_current()), which computes what the widened twin does
    CNX_HPATH_AVX512 = 2,       // AVX-512 F/BW/DQ/VL: bf16 widened, float16 via vcvtph2ps
    CNX_HPATH_AVX512_BF16 = 3,  // plus AVX512_BF16: bf16 by vdpbf16ps; float16 as CNX_HPATH_AVX512
    CNX_HPATH_NEON_BF16 = 4,    // arm64 with FEAT_BF16: bf16 by BFDOT (the dot twin within a rounding
                                // bound, neon_hgemm.c), float16 widened by FCVTL in the kernel
} cnx_hpath;

/// The paths this CPU has, up to the returned one: AVX-512 when the float kernels' path
/// (cnx_isa_current(), so CNX_ISA lowers it) is AVX-512, with BF16 when cnx_cpu_features() has
/// CNX_CPU_AVX512_BF16 (cnx_cpu.h: CNX_ISA lowers both); neon bf16 when it is NEON and the CPU
/// has CNX_CPU_BF16; float when it is AVX2 or NEON without BF16; else scalar.
cnx_hpath cnx_hpath_available(void);

/// Above this ratio of a vdpbf16ps's time to an FMA's the dot product multiplies slower than the
/// float FMAs of the widened kernel (it does two multiply-adds a lane, an FMA one).
#define CNX_BF16_DOT_MAX_TIME_RATIO 2.0

/// The time of one vdpbf16ps over that of one float FMA on this CPU, measured on first call
/// (about 1 ms: 24 independent chains of each, the least of 9 interleaved tries); 0 on a CPU
/// without AVX512_BF16 (and off x86).
double cnx_hpath_bf16_dot_time_ratio(void);

/// The path to use: cnx_hpath_available(), except avx512 (bf16 weights widened to float in the
/// kernel) instead of avx512bf16 where cnx_hpath_bf16_dot_time_ratio() is above
/// CNX_BF16_DOT_MAX_TIME_RATIO. The environment variable CNX_HPATH (`scalar`, `float`, `avx512`,
/// `avx512bf16`, `neonbf16`) chooses any available path instead (an x86 level on arm64 gives
/// float; one the CPU lacks gives the default). Never a path the CPU lacks.
cnx_hpath cnx_hpath_detect(void);
/// The path in use: cnx_hpath_detect() on first use, unless forced. Thread-safe.
cnx_hpath cnx_hpath_current(void);
/// Forces a path (tests, benchmarks), clamped to what the CPU has; -1 returns to detection.
void cnx_hpath_force(int path);
/// "scalar", "float", "avx512", "avx512bf16", "neonbf16" (or "unknown").
const char *cnx_hpath_name(cnx_hpath path);

// MARK: - GEMM

/// Halves (uint16) the packed form of a (k x n) weight needs, for either dtype.
size_t cnx_hgemm_packed_b_halves(int64_t k, int64_t n);
/// Packs B (k x n bfloat16 bits, row-major) into bfloat16 pair panels.
void cnx_hgemm_pack_b_bf16(const uint16_t *b, int64_t k, int64_t n, uint16_t *packed);
/// Packs B (k x n binary16 bits, row-major) into float16 panels.
void cnx_hgemm_pack_b_f16(const uint16_t *b, int64_t k, int64_t n, uint16_t *packed);

/// C[i][j] = residual[i][j] + act(bias[j] + sum_k A[i][k] B[k][j]), arguments as cnx_gemm_f32's
/// (bias may be NULL, residual NULL or C itself with ldr == ldc; act a CNX_ACT_* code), packed_b
/// from cnx_hgemm_pack_b_bf16. Dot path with AVX512_BF16 or arm64 BF16, widened path otherwise.
void cnx_gemm_bf16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                   const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc);
/// The same with float16 weights (packed by cnx_hgemm_pack_b_f16).
void cnx_gemm_f16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                  const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc);

/// Activations already in bfloat16, for a layer whose input another kernel rounded (the block's
/// norm, or the first pointwise layer's epilogue): A is k x m bfloat16 bits, row-major, lda in
/// halves. Output float32 into c, or (c NULL) bfloat16 into c16, rounded as cnx_round_bf16
/// rounds; ldc is the output's row stride in elements; residual is float32 (may be c itself
/// with ldr == ldc). The dot path on AVX512_BF16 (k even), its twin cnx_gemm_bf16_a16_ref
/// elsewhere. Rounding A with cnx_round_bf16 and calling this gives the same bits as
/// cnx_gemm_bf16 on the float A (the dot path rounds its inputs the same way).
void cnx_gemm_bf16_a16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                       const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16, int64_t ldc);
void cnx_gemm_bf16_a16_ref(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                           const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16,
                           int64_t ldc);
/// count floats to bfloat16 as the dot path rounds its inputs (denormals to zero, then round to
/// nearest even; vcvtneps2bf16 on AVX512_BF16, cnx_round_bf16_ref elsewhere).
void cnx_round_bf16(const float *x, int64_t count, uint16_t *y);
void cnx_round_bf16_ref(const float *x, int64_t count, uint16_t *y);

/// Depthwise k x k convolution of output rows [y0, y1) (cnx_dwconv_nhwc_rows_f32's arguments and
/// layout) on the bfloat16 dot product, for the bfloat16 models: x and the weights rounded to
/// bfloat16 (nearest even, denormals as zero), per kernel row the taps in pairs (kx, kx + 1), the
/// last odd tap paired with zero, each pair's odd product added first, then the even one, to a
/// float accumulator that starts at the bias (vdpbf16ps: each sum rounded, denormal sums
/// flushed). Runs only where the bfloat16 dot path does (AVX-512 BF16 chosen by
/// cnx_hpath_current) and k is 3, 5 or 7: returns 1, or 0 having written nothing (the caller then
/// runs the float32 depthwise). Its twin, cnx_dwconv_nhwc_rows_bf16_ref, gives the same bits.
int cnx_dwconv_nhwc_rows_bf16(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                              const float *bias, float *y, int64_t y0, int64_t y1);
void cnx_dwconv_nhwc_rows_bf16_ref(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                                   const float *bias, float *y, int64_t y0, int64_t y1);
/// 1 when cnx_dwconv_nhwc_rows_bf16 runs for a k x k kernel on this CPU's path, else 0.
int cnx_dwconv_bf16_runs(int64_t k);
/// y[i] = x[i] rounded to bfloat16 as the dot path rounds (cnx_round_bf16), kept as a float (the
/// low 16 bits zero); y may be x. A block whose depthwise weight is bfloat16 computes from its
/// input rounded so, on any path: where the dot kernel does not run, the runtime rounds the input
/// with this and runs the float32 depthwise on it (the same products, summed in another order).
void cnx_round_bf16_f32(const float *x, int64_t count, float *y);

/// The twins (same arguments): the bf16 dot path's emulation, the widened bf16 path, float16.
/// Without a residual behind an activation, the accumulator starts at bias (plus the residual
/// when there is no activation), then takes the products in k order, as the SIMD paths do.
void cnx_gemm_bf16_dot_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                           const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc);
void cnx_gemm_bf16_wide_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                            const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc);
void cnx_gemm_f16_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                      const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc);

#ifdef __cplusplus
}
#endif

#endif
