// The norms over the last axis, without affine unless gamma / beta are given (the converter folds
// them into the next layer):
//   LayerNorm: two passes (mean, then the variance of x - mean), y = (x - mean) rstd.
//   RMS norm (timm RmsNorm2d): one pass (the mean square), y = x rstd, rstd = 1 / sqrt(ms + eps).
//   simple norm (timm SimpleNorm2d): two passes (mean, then sum (x - mean)^2 / (c - 1)), y = x rstd.
#include "cnx_fast.h"
#include "cnx_half.h"
#include "neon_internal.h"

#include <math.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#include <immintrin.h>
#endif

void cnx_layernorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                                const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        double sum = 0.0, sq = 0.0;
        for (int64_t i = 0; i < c; i++) sum += xr[i];
        const float mean = (float)(sum / (double)c);
        for (int64_t i = 0; i < c; i++) {
            double d = (double)xr[i] - (double)mean;
            sq += d * d;
        }
        const float rstd = (float)(1.0 / sqrt(sq / (double)c + (double)eps));
        for (int64_t i = 0; i < c; i++) {
            float v = (xr[i] - mean) * rstd;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}

// The RMS and simple norms: y = x rstd (not centred), from the mean square (RMS) or the unbiased
// variance (simple). Sums in double.
enum { NORM_RMS = 0, NORM_SIMPLE = 1 };

static void scaled_rows_ref(int kind, const float *x, int64_t rows, int64_t c, float eps,
                            const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        double stat = 0.0;
        if (kind == NORM_RMS) {
            for (int64_t i = 0; i < c; i++) stat += (double)xr[i] * (double)xr[i];
            stat /= (double)c;
        } else {
            double sum = 0.0;
            for (int64_t i = 0; i < c; i++) sum += xr[i];
            const double mean = sum / (double)c;
            for (int64_t i = 0; i < c; i++) {
                const double d = (double)xr[i] - mean;
                stat += d * d;
            }
            stat /= (double)(c - 1);  // c == 1: 0 / 0 = NaN, as torch.var
        }
        const float rstd = (float)(1.0 / sqrt(stat + (double)eps));
        for (int64_t i = 0; i < c; i++) {
            float v = xr[i] * rstd;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}

void cnx_rmsnorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                              const float *gamma, const float *beta, float *y) {
    scaled_rows_ref(NORM_RMS, x, rows, c, eps, gamma, beta, y);
}

void cnx_simplenorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                                 const float *gamma, const float *beta, float *y) {
    scaled_rows_ref(NORM_SIMPLE, x, rows, c, eps, gamma, beta, y);
}

#if CNX_X86

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))

static inline __attribute__((always_inline)) T512 __mmask16 tail512(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

// A row's mean and 1 / sqrt(var + eps), broadcast (the two passes of the float and the bfloat16
// output, which therefore normalise to the same floats).
static inline __attribute__((always_inline)) T512 void layernorm_stats512(const float *xr, int64_t c, float eps, __m512 *mean,
                                                                          __m512 *rstd) {
    const float inv_c = 1.0f / (float)c;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= c; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + i + 16));
    }
    for (; i < c; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail512(c - i), xr + i));
    *mean = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) * inv_c);
    s0 = _mm512_setzero_ps();
    s1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= c; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + i), *mean);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16), *mean);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    for (; i < c; i += 16) {
        __mmask16 m = tail512(c - i);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + i), *mean);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    const float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) * inv_c;
    *rstd = _mm512_set1_ps(1.0f / sqrtf(var + eps));
}

// Columns i.. of a row normalised: (x - mean) rstd (* gamma) (+ beta), under m.
static inline __attribute__((always_inline)) T512 __m512 layernorm_out512(const float *xr, int64_t i, __mmask16 m, __m512 mean,
                                                                         __m512 rstd, const float *gamma, const float *beta) {
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), mean), rstd);
    if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, gamma + i));
    if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + i));
    return v;
}

// Every row: its statistics, then its normalised vectors v (columns i.., mask m) to STORE.
#define LAYERNORM_ROWS512(STORE)                                                      \
    for (int64_t r = 0; r < rows; r++) {                                              \
        const float *xr = x + r * c;                                                  \
        __m512 mean, rstd;                                                            \
        layernorm_stats512(xr, c, eps, &mean, &rstd);                                 \
        for (int64_t i = 0; i < c; i += 16) {                                         \
            const __mmask16 m = tail512(c - i);                                       \
            const __m512 v = layernorm_out512(xr, i, m, mean, rstd, gamma, beta);     \
            STORE;                                                                    \
        }                                                                             \
    }

static T512 void layernorm_avx512(const float *x, int64_t rows, int64_t c, float eps,
                                  const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    LAYERNORM_ROWS512(_mm512_mask_storeu_ps(y + r * c + i, m, v))
}

// The same rows rounded to bfloat16 as they are written (vcvtneps2bf16: nearest even, denormals
// to zero), the bits of cnx_round_bf16 on the float output, without writing or reading it.
static __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma"))) void
layernorm_bf16_avx512(const float *x, int64_t rows, int64_t c, float eps, const float *gamma, const float *beta, uint16_t *y) {
    if (c <= 0) return;
    LAYERNORM_ROWS512(_mm256_mask_storeu_epi16(y + r * c + i, m, (__m256i)_mm512_cvtneps_pbh(v)))
}

static inline __attribute__((always_inline)) T256 __m256i tail256(int64_t left) {
    int v = left > 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) T256 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static T256 void layernorm_avx2(const float *x, int64_t rows, int64_t c, float eps,
                                const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    const float inv_c = 1.0f / (float)c;
    const int64_t cv = c & ~(int64_t)7;  // columns in whole vectors
    const __m256i mt = tail256(c - cv);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= cv; i += 16) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + i + 8));
        }
        for (; i < cv; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
        if (cv < c) s1 = _mm256_add_ps(s1, _mm256_maskload_ps(xr + cv, mt));
        const float meanf = hsum256(_mm256_add_ps(s0, s1)) * inv_c;
        const __m256 mean = _mm256_set1_ps(meanf);
        s0 = _mm256_setzero_ps();
        s1 = _mm256_setzero_ps();
        for (i = 0; i + 16 <= cv; i += 16) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mean);
            __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), mean);
            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
        }
        for (; i < cv; i += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mean);
            s0 = _mm256_fmadd_ps(d, d, s0);
        }
        if (cv < c) {
            __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + cv, mt), mean),
                                     _mm256_castsi256_ps(mt));
            s1 = _mm256_fmadd_ps(d, d, s1);
        }
        const float var = hsum256(_mm256_add_ps(s0, s1)) * inv_c;
        const __m256 rstd = _mm256_set1_ps(1.0f / sqrtf(var + eps));
        for (i = 0; i < cv; i += 8) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mean), rstd);
            if (gamma) v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma + i));
            if (beta) v = _mm256_add_ps(v, _mm256_loadu_ps(beta + i));
            _mm256_storeu_ps(yr + i, v);
        }
        if (cv < c) {
            __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + cv, mt), mean), rstd);
            if (gamma) v = _mm256_mul_ps(v, _mm256_maskload_ps(gamma + cv, mt));
            if (beta) v = _mm256_add_ps(v, _mm256_maskload_ps(beta + cv, mt));
            _mm256_maskstore_ps(yr + cv, mt, v);
        }
    }
}

// MARK: - RMS and simple norms

// rstd of a row from its float sums: the RMS norm's from sq, the sum of the squares; the simple
// norm's from sq, the squares about the float mean, corrected by sum_d, the sum of the
// deviations (see scaled_row512).
static inline __attribute__((always_inline)) float scaled_rstd(int kind, float sq, float sum_d, int64_t c, float eps) {
    if (kind == NORM_SIMPLE) {
        sq -= sum_d * sum_d / (float)c;
        if (sq < 0.0f) sq = 0.0f;  // rounding, for constant rows
    }
    return 1.0f / sqrtf(sq / (float)(kind == NORM_RMS ? c : c - 1) + eps);
}

// The statistic of one row over 4 vector accumulators (64 partial sums), then rstd; the output
// pass as the reference (x rstd, then gamma, then beta).
static inline __attribute__((always_inline)) T512 void scaled_row512(const int KIND, const float *xr,
                                                                     int64_t c, float eps,
                                                                     const float *gamma,
                                                                     const float *beta, float *yr) {
    __m512 s[4], mean = _mm512_setzero_ps();
    int64_t i;
    if (KIND == NORM_SIMPLE) {
        for (int u = 0; u < 4; u++) s[u] = _mm512_setzero_ps();
        for (i = 0; i + 64 <= c; i += 64)
            for (int u = 0; u < 4; u++) s[u] = _mm512_add_ps(s[u], _mm512_loadu_ps(xr + i + 16 * u));
        for (; i < c; i += 16) s[0] = _mm512_add_ps(s[0], _mm512_maskz_loadu_ps(tail512(c - i), xr + i));
        const float total = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
        mean = _mm512_set1_ps(total / (float)c);
    }
    // Squares (about the float mean: d = x - mean); for the simple norm also sum d, for the
    // corrected two-pass variance (sum d^2 - (sum d)^2 / c): exact in real arithmetic, it removes
    // the rounding of the mean, which would otherwise add c (mean error)^2 to the sum.
    __m512 sd = _mm512_setzero_ps();
    for (int u = 0; u < 4; u++) s[u] = _mm512_setzero_ps();
    for (i = 0; i + 64 <= c; i += 64) {
        for (int u = 0; u < 4; u++) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16 * u), mean);
            s[u] = _mm512_fmadd_ps(d, d, s[u]);
            if (KIND == NORM_SIMPLE) sd = _mm512_add_ps(sd, d);
        }
    }
    for (; i < c; i += 16) {
        const __mmask16 m = tail512(c - i);
        const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + i), mean);
        s[0] = _mm512_fmadd_ps(d, d, s[0]);
        if (KIND == NORM_SIMPLE) sd = _mm512_add_ps(sd, d);
    }
    const float sq = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
    const __m512 rstd = _mm512_set1_ps(scaled_rstd(KIND, sq, KIND == NORM_SIMPLE ? _mm512_reduce_add_ps(sd) : 0.0f, c, eps));
    for (i = 0; i < c; i += 16) {
        const __mmask16 m = tail512(c - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), rstd);
        if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, gamma + i));
        if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + i));
        _mm512_mask_storeu_ps(yr + i, m, v);
    }
}

static T512 void scaled_rows_avx512(int kind, const float *x, int64_t rows, int64_t c, float eps,
                                    const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        if (kind == NORM_RMS) scaled_row512(NORM_RMS, x + r * c, c, eps, gamma, beta, y + r * c);
        else scaled_row512(NORM_SIMPLE, x + r * c, c, eps, gamma, beta, y + r * c);
    }
}

static inline __attribute__((always_inline)) T256 void scaled_row256(const int KIND, const float *xr,
                                                                     int64_t c, float eps,
                                                                     const float *gamma,
                                                                     const float *beta, float *yr) {
    const int64_t cv = c & ~(int64_t)7;  // columns in whole vectors
    const __m256i mt = tail256(c - cv);
    __m256 s[4], mean = _mm256_setzero_ps();
    int64_t i;
    if (KIND == NORM_SIMPLE) {
        for (int u = 0; u < 4; u++) s[u] = _mm256_setzero_ps();
        for (i = 0; i + 32 <= cv; i += 32)
            for (int u = 0; u < 4; u++) s[u] = _mm256_add_ps(s[u], _mm256_loadu_ps(xr + i + 8 * u));
        for (; i < cv; i += 8) s[0] = _mm256_add_ps(s[0], _mm256_loadu_ps(xr + i));
        if (cv < c) s[1] = _mm256_add_ps(s[1], _mm256_maskload_ps(xr + cv, mt));
        const float total = hsum256(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
        mean = _mm256_set1_ps(total / (float)c);
    }
    __m256 sd = _mm256_setzero_ps();  // the simple norm's sum of d (see scaled_row512)
    for (int u = 0; u < 4; u++) s[u] = _mm256_setzero_ps();
    for (i = 0; i + 32 <= cv; i += 32) {
        for (int u = 0; u < 4; u++) {
            const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8 * u), mean);
            s[u] = _mm256_fmadd_ps(d, d, s[u]);
            if (KIND == NORM_SIMPLE) sd = _mm256_add_ps(sd, d);
        }
    }
    for (; i < cv; i += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mean);
        s[0] = _mm256_fmadd_ps(d, d, s[0]);
        if (KIND == NORM_SIMPLE) sd = _mm256_add_ps(sd, d);
    }
    if (cv < c) {
        const __m256 d = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(xr + cv, mt), mean), _mm256_castsi256_ps(mt));
        s[1] = _mm256_fmadd_ps(d, d, s[1]);
        if (KIND == NORM_SIMPLE) sd = _mm256_add_ps(sd, d);
    }
    const float sq = hsum256(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
    const __m256 rstd = _mm256_set1_ps(scaled_rstd(KIND, sq, KIND == NORM_SIMPLE ? hsum256(sd) : 0.0f, c, eps));
    for (i = 0; i < cv; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xr + i), rstd);
        if (gamma) v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma + i));
        if (beta) v = _mm256_add_ps(v, _mm256_loadu_ps(beta + i));
        _mm256_storeu_ps(yr + i, v);
    }
    if (cv < c) {
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(xr + cv, mt), rstd);
        if (gamma) v = _mm256_mul_ps(v, _mm256_maskload_ps(gamma + cv, mt));
        if (beta) v = _mm256_add_ps(v, _mm256_maskload_ps(beta + cv, mt));
        _mm256_maskstore_ps(yr + cv, mt, v);
    }
}

static T256 void scaled_rows_avx2(int kind, const float *x, int64_t rows, int64_t c, float eps,
                                  const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        if (kind == NORM_RMS) scaled_row256(NORM_RMS, x + r * c, c, eps, gamma, beta, y + r * c);
        else scaled_row256(NORM_SIMPLE, x + r * c, c, eps, gamma, beta, y + r * c);
    }
}

#endif  // CNX_X86

void cnx_layernorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                            const float *gamma, const float *beta, float *y) {
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: layernorm_avx512(x, rows, c, eps, gamma, beta, y); return;
    case CNX_ISA_AVX2: layernorm_avx2(x, rows, c, eps, gamma, beta, y); return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_layernorm_rows_f32_neon(x, rows, c, eps, gamma, beta, y); return;
#endif
    default: cnx_layernorm_rows_f32_ref(x, rows, c, eps, gamma, beta, y); return;
    }
}

int cnx_layernorm_rows_bf16(const float *x, int64_t rows, int64_t c, float eps, const float *gamma, const float *beta,
                            uint16_t *y) {
#if CNX_X86
    if (cnx_isa_current() == CNX_ISA_AVX512 && cnx_hpath_current() == CNX_HPATH_AVX512_BF16) {
        layernorm_bf16_avx512(x, rows, c, eps, gamma, beta, y);
        return 1;
    }
#endif
    (void)x, (void)rows, (void)c, (void)eps, (void)gamma, (void)beta, (void)y;
    return 0;
}

static void scaled_rows(int kind, const float *x, int64_t rows, int64_t c, float eps,
                        const float *gamma, const float *beta, float *y) {
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: scaled_rows_avx512(kind, x, rows, c, eps, gamma, beta, y); return;
    case CNX_ISA_AVX2: scaled_rows_avx2(kind, x, rows, c, eps, gamma, beta, y); return;
#endif
    default: scaled_rows_ref(kind, x, rows, c, eps, gamma, beta, y); return;
    }
}

void cnx_rmsnorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                          const float *gamma, const float *beta, float *y) {
#if CNX_ARM64
    if (cnx_isa_current() == CNX_ISA_NEON) {
        cnx_rmsnorm_rows_f32_neon(x, rows, c, eps, gamma, beta, y);
        return;
    }
#endif
    scaled_rows(NORM_RMS, x, rows, c, eps, gamma, beta, y);
}

void cnx_simplenorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps,
                             const float *gamma, const float *beta, float *y) {
    scaled_rows(NORM_SIMPLE, x, rows, c, eps, gamma, beta, y);
}
