// LayerNorm over the last axis, two passes (mean, then the variance of x - mean), without
// affine unless gamma / beta are given: the converter folds them into the next layer.
#include "cnx_fast.h"
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

#if CNX_X86

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))

static inline __attribute__((always_inline)) T512 __mmask16 tail512(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

static T512 void layernorm_avx512(const float *x, int64_t rows, int64_t c, float eps,
                                  const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    const float inv_c = 1.0f / (float)c;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= c; i += 32) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + i));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + i + 16));
        }
        for (; i < c; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail512(c - i), xr + i));
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) * inv_c);
        s0 = _mm512_setzero_ps();
        s1 = _mm512_setzero_ps();
        for (i = 0; i + 32 <= c; i += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + i), mean);
            __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + i + 16), mean);
            s0 = _mm512_fmadd_ps(d0, d0, s0);
            s1 = _mm512_fmadd_ps(d1, d1, s1);
        }
        for (; i < c; i += 16) {
            __mmask16 m = tail512(c - i);
            __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, xr + i), mean);
            s0 = _mm512_fmadd_ps(d, d, s0);
        }
        const float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) * inv_c;
        const __m512 rstd = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (i = 0; i < c; i += 16) {
            __mmask16 m = tail512(c - i);
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xr + i), mean), rstd);
            if (gamma) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, gamma + i));
            if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + i));
            _mm512_mask_storeu_ps(yr + i, m, v);
        }
    }
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
