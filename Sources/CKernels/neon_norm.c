// arm64 (NEON) normalisations over the last axis: LayerNorm (two passes: the mean, then the
// variance of x - mean) and RMSNorm (x / sqrt(mean(x^2) + eps)), each with optional gamma and beta
// (cnx_fast.h semantics). Sums run in 4 vector accumulators (16 independent lanes); the last
// 1..3 columns of a row are a partial vector with the missing lanes zero (and masked out of the
// variance).
#include "cnx_fast.h"
#include "neon_internal.h"

#include <math.h>

#if CNX_ARM64

// Lanes [0, n) of a vector set (n clamped to [0, 4]).
static inline uint32x4_t lane_mask(int64_t n) {
    static const uint32_t idx[4] = {0, 1, 2, 3};
    return vcltq_u32(vld1q_u32(idx), vdupq_n_u32((uint32_t)(n < 0 ? 0 : n > 4 ? 4 : n)));
}

// sum of x[0..c), in 4 vector accumulators.
static inline float row_sum(const float *x, int64_t c) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= c; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + i));
        s1 = vaddq_f32(s1, vld1q_f32(x + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + i + 12));
    }
    for (; i < c; i += 4) s0 = vaddq_f32(s0, neon_load_partial(x + i, c - i));
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}

// sum of (x - mean)^2 over x[0..c), in 4 vector accumulators; the tail's missing lanes masked.
static inline float row_sum_sq(const float *x, int64_t c, float mean) {
    const float32x4_t mv = vdupq_n_f32(mean);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= c; i += 16) {
        const float32x4_t d0 = vsubq_f32(vld1q_f32(x + i), mv), d1 = vsubq_f32(vld1q_f32(x + i + 4), mv);
        const float32x4_t d2 = vsubq_f32(vld1q_f32(x + i + 8), mv), d3 = vsubq_f32(vld1q_f32(x + i + 12), mv);
        s0 = vfmaq_f32(s0, d0, d0);
        s1 = vfmaq_f32(s1, d1, d1);
        s2 = vfmaq_f32(s2, d2, d2);
        s3 = vfmaq_f32(s3, d3, d3);
    }
    for (; i < c; i += 4) {
        const uint32x4_t live = lane_mask(c - i);
        const float32x4_t d = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vsubq_f32(neon_load_partial(x + i, c - i), mv)), live));
        s0 = vfmaq_f32(s0, d, d);
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}

// y = (x - mean) * rstd * gamma + beta over one row.
static inline void row_apply(const float *x, int64_t c, float mean, float rstd, const float *gamma,
                             const float *beta, float *y) {
    const float32x4_t mv = vdupq_n_f32(mean), rv = vdupq_n_f32(rstd);
    for (int64_t i = 0; i < c; i += 4) {
        const int64_t n = c - i;
        float32x4_t v = vmulq_f32(vsubq_f32(neon_load_partial(x + i, n), mv), rv);
        if (gamma) v = vmulq_f32(v, neon_load_partial(gamma + i, n));
        if (beta) v = vaddq_f32(v, neon_load_partial(beta + i, n));
        neon_store_partial(y + i, v, n);
    }
}

// LayerNorm (centre: subtract the mean first) or RMSNorm over each row.
static void norm_rows(int centre, const float *x, int64_t rows, int64_t c, float eps,
                      const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    const float inv_c = 1.0f / (float)c;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        const float mean = centre ? row_sum(xr, c) * inv_c : 0.0f;
        const float var = row_sum_sq(xr, c, mean) * inv_c;
        row_apply(xr, c, mean, 1.0f / sqrtf(var + eps), gamma, beta, y + r * c);
    }
}

void cnx_layernorm_rows_f32_neon(const float *x, int64_t rows, int64_t c, float eps,
                                 const float *gamma, const float *beta, float *y) {
    norm_rows(1, x, rows, c, eps, gamma, beta, y);
}

void cnx_rmsnorm_rows_f32_neon(const float *x, int64_t rows, int64_t c, float eps,
                               const float *gamma, const float *beta, float *y) {
    norm_rows(0, x, rows, c, eps, gamma, beta, y);
}

#endif  // CNX_ARM64
