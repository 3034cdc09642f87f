// Private to Sources/CKernels: what fast_hgemm.c (twins, dispatch) and fast_hgemm_avx512.c share.
#ifndef CNX_HGEMM_INTERNAL_H
#define CNX_HGEMM_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "cnx_half.h"

/// Flush a float denormal to a zero of its sign.
static inline float cnx_ftz(float x) { return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x; }

/// The dot path's rounding of an activation: denormals are treated as zero, then round to nearest
/// even (what vcvtne2ps2bf16 does).
static inline float cnx_bf16_round_daz(float x) { return cnx_f32_from_bf16(cnx_bf16_from_f32(cnx_ftz(x))); }

/// One lane of vdpbf16ps on one pair, the twins' emulation: s + a1 w1, then + a0 w0 (the odd
/// product first), each product exact in float (bfloat16 operands), each sum rounded to float with
/// a denormal result flushed.
static inline float cnx_bf16_dot_pair(float s, float a0, float a1, float w0, float w1) {
    s = cnx_ftz(s + a1 * w1);
    return cnx_ftz(s + a0 * w0);
}

/// Which computation a half-precision GEMM runs (cnx_half.h).
enum { CNX_HK_BF16_DOT = 0, CNX_HK_BF16_WIDE = 1, CNX_HK_F16 = 2 };

#define CNX_HPANEL 32

/// The AVX-512 kernels (fast_hgemm_avx512.c); kind CNX_HK_BF16_DOT needs AVX512_BF16.
void cnx_hgemm_avx512(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const uint16_t *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc);

/// The AVX512_BF16 kernels of activations already in bfloat16 (cnx_gemm_bf16_a16, k even) and
/// of the rounding to bfloat16 (cnx_round_bf16).
void cnx_hgemm_a16_avx512bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                              const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16,
                              int64_t ldc);
void cnx_round_bf16_avx512bf16(const float *x, int64_t count, uint16_t *y);

/// The time of a vdpbf16ps over that of a float FMA (vfmadd231ps, zmm), both measured here in
/// 24 independent chains, the least of 9 interleaved tries each (about 1 ms in all). A vdpbf16ps
/// does two multiply-adds a lane, an FMA one: above 2 the widened path multiplies faster.
double cnx_bf16_dot_time_ratio_avx512bf16(void);

/// The arm64 kernels (neon_hgemm.c); kind CNX_HK_BF16_DOT needs FEAT_BF16, CNX_HK_F16 any arm64.
void cnx_hgemm_neon(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                    const uint16_t *packed_b, const float *bias, int act, const float *residual,
                    int64_t ldr, float *c, int64_t ldc);

#endif
