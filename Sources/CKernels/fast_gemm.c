// GEMM with a fused epilogue (bias, exact GELU, residual) for the pointwise layers, and the
// elementwise GELU that shares its vectorised erf.
//
// Layout: B is packed once into panels of 32 columns, K-major inside a panel, so a K block of a
// panel is one contiguous run. A is read in place (rows contiguous, leading dimension lda).
// Loop nest of the SIMD paths, per call:
//   rows in blocks of MC -> K in blocks of at most KC -> 32-column panels -> micro-tiles of MR rows.
// The panel's K block (KC x 32 floats) stays in L1 while the MR-row tiles of the row block stream
// their A rows past it; the row block's C stays in L2 between K blocks. Partial sums of the
// earlier K blocks live in C; the epilogue runs in registers after the last K block.
#include "cnx_fast.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define PANEL CNX_GEMM_PANEL

// Blocking. KC x 32 floats of B (24 KB at KC = 192) plus an A tile (MR x KC) fit the 48 KB L1.
#ifndef GEMM_KC
#define GEMM_KC 192
#endif
#ifndef GEMM_MC
#define GEMM_MC 112
#endif
#define MR512 14   // AVX-512 tile: 14 rows x 32 columns = 28 zmm accumulators
#define MR256 6    // AVX2 tile:     6 rows x 16 columns = 12 ymm accumulators

// MARK: - erf and GELU

// erf on [0, 4) by piecewise polynomials in t = x - centre (centre 0 for the first interval, so
// that erf stays relatively accurate near 0, and the interval's midpoint for the others), fitted
// to erf (minimax by reweighted least squares, then rounded to float); absolute error below 7e-8
// in float arithmetic. erf(x) rounds to 1 in float beyond 3.92, so |x| is clamped to 4. A lane
// permute picks each lane's interval: row 0 holds the centres, row 1 + j the coefficients of t^j,
// columns are intervals.
// Past ERF_ONE erf is exactly 1 (as erff gives it): then 1 + erf(-x) is 0, not a rounding error
// that GELU would multiply by a huge |x|.
// The AVX2 path has 8-lane permutes: 8 intervals of width 1/2, degree 7.
static const float ERF_TAB[9][8] __attribute__((aligned(32))) = {
    {0.0f, 0.75f, 1.25f, 1.75f, 2.25f, 2.75f, 3.25f, 3.75f},
    {0.000000000e+00f, 7.111556530e-01f, 9.229001403e-01f, 9.866716862e-01f, 9.985373020e-01f, 9.998993874e-01f, 9.999957085e-01f, 9.999998808e-01f},
    {1.128379345e+00f, 6.429310441e-01f, 2.365211248e-01f, 5.277499557e-02f, 7.142319344e-03f, 5.862773396e-04f, 2.918900100e-05f, 8.814262173e-07f},
    {-9.590844456e-06f, -4.821981490e-01f, -2.956517339e-01f, -9.235620499e-02f, -1.607015729e-02f, -1.612267341e-03f, -9.486932686e-05f, -3.306070539e-06f},
    {-3.759651482e-01f, 2.678815462e-02f, 1.675359309e-01f, 9.015743434e-02f, 2.172449417e-02f, 2.760376548e-03f, 1.958139910e-04f, 7.970661500e-06f},
    {-1.272979076e-03f, 1.506757587e-01f, -6.132055540e-03f, -4.810548946e-02f, -1.908825338e-02f, -3.257713048e-03f, -2.861695539e-04f, -1.378542675e-05f},
    {1.181067899e-01f, -5.321077257e-02f, -4.718795419e-02f, 6.617028266e-03f, 1.066066977e-02f, 2.756412374e-03f, 3.135855077e-04f, 1.831937516e-05f},
    {-1.142420620e-02f, -2.658424340e-02f, 2.059795707e-02f, 9.049122222e-03f, -2.779600443e-03f, -1.667821896e-03f, -2.737570030e-04f, -2.069223410e-05f},
    {-1.594039798e-02f, 1.782745495e-02f, 3.757900558e-03f, -5.919799674e-03f, -7.271057693e-04f, 6.347000017e-04f, 1.739928412e-04f, 1.724240246e-05f},
};

// The AVX-512 path uses 16 intervals of width 1/4 (a zmm permute selects among 16), where
// degree 5 reaches the same accuracy (below 6e-8) with two fewer multiply-adds.
static const float ERF16_TAB[7][16] __attribute__((aligned(64))) = {
    {0.0f, 0.375f, 0.625f, 0.875f, 1.125f, 1.375f, 1.625f, 1.875f, 2.125f, 2.375f, 2.625f, 2.875f, 3.125f, 3.375f, 3.625f, 3.875f},
    {0.000000000e+00f, 4.041168988e-01f, 6.232408881e-01f, 7.840750813e-01f, 8.883882165e-01f, 9.481700659e-01f, 9.784437418e-01f, 9.919900298e-01f, 9.973459840e-01f, 9.992170334e-01f, 9.997946024e-01f, 9.999521375e-01f, 9.999901056e-01f, 9.999982119e-01f, 9.999997020e-01f, 9.999999404e-01f},
    {1.128378630e+00f, 9.803528190e-01f, 7.634995580e-01f, 5.247450471e-01f, 3.182739615e-01f, 1.703597754e-01f, 8.047225326e-02f, 3.354582563e-02f, 1.234081946e-02f, 4.006478004e-03f, 1.147875562e-03f, 2.902286651e-04f, 6.475887494e-05f, 1.275181421e-05f, 2.215943141e-06f, 3.398282047e-07f},
    {2.748206498e-05f, -3.676254749e-01f, -4.771815538e-01f, -4.591504931e-01f, -3.580603004e-01f, -2.342477143e-01f, -1.307694018e-01f, -6.289899349e-02f, -2.622399852e-02f, -9.514959529e-03f, -3.012863919e-03f, -8.342493093e-04f, -2.023084089e-04f, -4.301684021e-05f, -8.027216609e-06f, -1.315553618e-06f},
    {-3.765966296e-01f, -2.348746210e-01f, -5.567584187e-02f, 9.291825444e-02f, 1.624495536e-01f, 1.579381078e-01f, 1.148424000e-01f, 6.744251400e-02f, 3.303794935e-02f, 1.373050082e-02f, 4.890230484e-03f, 1.502382918e-03f, 3.999423061e-04f, 9.255314217e-05f, 1.866452112e-05f, 3.286130777e-06f},
    {3.341478994e-03f, 1.654139906e-01f, 1.754938513e-01f, 1.121532470e-01f, 2.833469212e-02f, -2.998309024e-02f, -4.938131571e-02f, -4.216312617e-02f, -2.640287764e-02f, -1.320593618e-02f, -5.466934759e-03f, -1.908536651e-03f, -5.682219053e-04f, -1.453426958e-04f, -3.210358773e-05f, -6.146433407e-06f},
    {1.037122607e-01f, 4.530490190e-02f, -2.698134072e-02f, -6.663781404e-02f, -6.102391705e-02f, -3.064923175e-02f, -2.327173948e-03f, 1.130888797e-02f, 1.243695151e-02f, 8.361012675e-03f, 4.239049740e-03f, 1.729768468e-03f, 5.853062030e-04f, 1.669819903e-04f, 4.058416380e-05f, 8.462296137e-06f},
};

#define ERF_ONE 3.92f  // erfc(3.92) = 2.98e-8 = half an ulp below 1
#define INV_SQRT2 0.70710678118654752f

static inline float gelu_scalar(float x) { return 0.5f * x * (1.0f + erff(x * INV_SQRT2)); }

INLINE T512 __m512 erf512(__m512 z) {
    __m512 az = _mm512_min_ps(_mm512_abs_ps(z), _mm512_set1_ps(4.0f));  // NaN -> 4
    __m512i idx = _mm512_cvttps_epi32(_mm512_mul_ps(az, _mm512_set1_ps(4.0f)));
    idx = _mm512_min_epi32(idx, _mm512_set1_epi32(15));
    __m512 t = _mm512_sub_ps(az, _mm512_permutexvar_ps(idx, _mm512_load_ps(ERF16_TAB[0])));
    __m512 p = _mm512_permutexvar_ps(idx, _mm512_load_ps(ERF16_TAB[6]));
    for (int j = 5; j >= 1; j--)
        p = _mm512_fmadd_ps(p, t, _mm512_permutexvar_ps(idx, _mm512_load_ps(ERF16_TAB[j])));
    p = _mm512_min_ps(p, _mm512_set1_ps(1.0f));
    p = _mm512_mask_mov_ps(p, _mm512_cmp_ps_mask(az, _mm512_set1_ps(ERF_ONE), _CMP_GE_OQ), _mm512_set1_ps(1.0f));
    return _mm512_or_ps(p, _mm512_and_ps(z, _mm512_set1_ps(-0.0f)));
}

INLINE T512 __m512 gelu512(__m512 x) {
    __m512 h = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(h, erf512(_mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT2))), h);
}

INLINE T256 __m256 erf256(__m256 z) {
    __m256 az = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), z), _mm256_set1_ps(4.0f));
    __m256i idx = _mm256_cvttps_epi32(_mm256_add_ps(az, az));
    idx = _mm256_min_epi32(idx, _mm256_set1_epi32(7));
    __m256 t = _mm256_sub_ps(az, _mm256_permutevar8x32_ps(_mm256_load_ps(ERF_TAB[0]), idx));
    __m256 p = _mm256_permutevar8x32_ps(_mm256_load_ps(ERF_TAB[8]), idx);
    for (int j = 7; j >= 1; j--)
        p = _mm256_fmadd_ps(p, t, _mm256_permutevar8x32_ps(_mm256_load_ps(ERF_TAB[j]), idx));
    p = _mm256_min_ps(p, _mm256_set1_ps(1.0f));
    p = _mm256_blendv_ps(p, _mm256_set1_ps(1.0f), _mm256_cmp_ps(az, _mm256_set1_ps(ERF_ONE), _CMP_GE_OQ));
    return _mm256_or_ps(p, _mm256_and_ps(z, _mm256_set1_ps(-0.0f)));
}

INLINE T256 __m256 gelu256(__m256 x) {
    __m256 h = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
    return _mm256_fmadd_ps(h, erf256(_mm256_mul_ps(x, _mm256_set1_ps(INV_SQRT2))), h);
}

// MARK: - Elementwise GELU

void cnx_gelu_inplace_f32_ref(float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] = gelu_scalar(x[i]);
}

static T512 void gelu_inplace_avx512(float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        _mm512_storeu_ps(x + i, gelu512(v0));
        _mm512_storeu_ps(x + i + 16, gelu512(v1));
    }
    for (; i < count; i += 16) {
        int64_t left = count - i;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        _mm512_mask_storeu_ps(x + i, m, gelu512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

INLINE T256 __m256i mask256(int64_t valid) {
    // Lanes [0, valid) set, valid clamped to [0, 8].
    if (valid < 0) valid = 0;
    if (valid > 8) valid = 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static T256 void gelu_inplace_avx2(float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        _mm256_storeu_ps(x + i, gelu256(v0));
        _mm256_storeu_ps(x + i + 8, gelu256(v1));
    }
    for (; i < count; i += 8) {
        __m256i m = mask256(count - i);
        _mm256_maskstore_ps(x + i, m, gelu256(_mm256_maskload_ps(x + i, m)));
    }
}

void cnx_gelu_inplace_f32(float *x, int64_t count) {
    switch (cnx_isa_current()) {
    case CNX_ISA_AVX512: gelu_inplace_avx512(x, count); return;
    case CNX_ISA_AVX2: gelu_inplace_avx2(x, count); return;
    default: cnx_gelu_inplace_f32_ref(x, count); return;
    }
}

// MARK: - Packing and the reference GEMM

size_t cnx_gemm_packed_b_floats(int64_t k, int64_t n) {
    if (k <= 0 || n <= 0) return 0;
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)k;
}

void cnx_gemm_pack_b(const float *b, int64_t k, int64_t n, float *packed) {
    int64_t panels = (n + PANEL - 1) / PANEL;
    for (int64_t p = 0; p < panels; p++) {
        int64_t j0 = p * PANEL, w = n - j0 < PANEL ? n - j0 : PANEL;
        float *dst = packed + p * PANEL * k;
        for (int64_t kk = 0; kk < k; kk++) {
            const float *src = b + kk * n + j0;
            int64_t j = 0;
            for (; j < w; j++) dst[kk * PANEL + j] = src[j];
            for (; j < PANEL; j++) dst[kk * PANEL + j] = 0.0f;
        }
    }
}

void cnx_gemm_f32_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            const float *bp = packed_b + (j / PANEL) * PANEL * k + j % PANEL;
            float s = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) s += a[i * lda + kk] * bp[kk * PANEL];
            if (bias) s += bias[j];
            if (act == 1) s = gelu_scalar(s);
            if (residual) s += residual[i * ldr + j];
            c[i * ldc + j] = s;
        }
    }
}

// MARK: - Blocking shared by the SIMD paths

typedef struct {
    const float *bias;      // at the tile's first column, or NULL
    const float *residual;  // at the tile's first row and column, or NULL
    int64_t ldr;
    int act;
    int first, last;        // first / last K block: initialise from bias / run the epilogue
    int64_t valid_n;        // columns of the tile inside C (may exceed the tile width)
} tile_ep;

// The residual can be folded into the initial accumulators (read at the first K block) unless
// GELU sits between; then it must survive in memory until the last K block, which it does not
// if it is C itself and C holds partial sums. That case runs K in one block.
static int64_t k_block(int64_t m, int64_t n, int64_t k, int act, const float *residual,
                       int64_t ldr, const float *c, int64_t ldc) {
    if (k <= GEMM_KC) return k;
    if (residual && act) {
        const float *r_end = residual + (m - 1) * ldr + n, *c_end = c + (m - 1) * ldc + n;
        if (residual < c_end && c < r_end) return k;
    }
    int64_t blocks = (k + GEMM_KC - 1) / GEMM_KC;
    return (k + blocks - 1) / blocks;
}

// MARK: - AVX-512 GEMM: 14 x 32 tiles

INLINE T512 void tile512(const int MR, int64_t kc, const float *a, int64_t lda, const float *bp,
                         float *c, int64_t ldc, const tile_ep *e) {
    __m512 acc0[MR512], acc1[MR512];
    int64_t vn = e->valid_n;
    const __mmask16 m0 = vn >= 16 ? 0xFFFF : (__mmask16)((1u << vn) - 1);
    const __mmask16 m1 = vn >= 32 ? 0xFFFF : vn <= 16 ? 0 : (__mmask16)((1u << (vn - 16)) - 1);
    if (e->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (e->bias) {
            b0 = _mm512_maskz_loadu_ps(m0, e->bias);
            b1 = _mm512_maskz_loadu_ps(m1, e->bias + 16);
        }
        if (e->residual && !e->act) {
#pragma clang loop unroll(full)
            for (int r = 0; r < MR; r++) {
                acc0[r] = _mm512_add_ps(b0, _mm512_maskz_loadu_ps(m0, e->residual + r * e->ldr));
                acc1[r] = _mm512_add_ps(b1, _mm512_maskz_loadu_ps(m1, e->residual + r * e->ldr + 16));
            }
        } else {
#pragma clang loop unroll(full)
            for (int r = 0; r < MR; r++) {
                acc0[r] = b0;
                acc1[r] = b1;
            }
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
            acc1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m512 b0 = _mm512_loadu_ps(bp + kk * PANEL), b1 = _mm512_loadu_ps(bp + kk * PANEL + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    if (e->last && e->act == 1) {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = gelu512(acc0[r]);
            if (m1) acc1[r] = gelu512(acc1[r]);
        }
        if (e->residual) {
#pragma clang loop unroll(full)
            for (int r = 0; r < MR; r++) {
                acc0[r] = _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(m0, e->residual + r * e->ldr));
                acc1[r] = _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(m1, e->residual + r * e->ldr + 16));
            }
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
}

typedef void (*tile_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                        int64_t ldc, const tile_ep *e);

#define DEF_TILE512(R)                                                                          \
    static T512 void tile512_##R(int64_t kc, const float *a, int64_t lda, const float *bp,     \
                                 float *c, int64_t ldc, const tile_ep *e) {                      \
        tile512(R, kc, a, lda, bp, c, ldc, e);                                                   \
    }
DEF_TILE512(1) DEF_TILE512(2) DEF_TILE512(3) DEF_TILE512(4) DEF_TILE512(5) DEF_TILE512(6)
DEF_TILE512(7) DEF_TILE512(8) DEF_TILE512(9) DEF_TILE512(10) DEF_TILE512(11) DEF_TILE512(12)
DEF_TILE512(13) DEF_TILE512(14)

static const tile_fn TILES512[MR512 + 1] = {
    0, tile512_1, tile512_2, tile512_3, tile512_4, tile512_5, tile512_6, tile512_7,
    tile512_8, tile512_9, tile512_10, tile512_11, tile512_12, tile512_13, tile512_14,
};

// MARK: - AVX2 GEMM: 6 x 16 tiles (each 32-column panel in two halves)

INLINE T256 void tile256(const int MR, int64_t kc, const float *a, int64_t lda, const float *bp,
                         float *c, int64_t ldc, const tile_ep *e) {
    __m256 acc0[MR256], acc1[MR256];
    const int64_t vn = e->valid_n;
    const int full = vn >= 16;
    const __m256i m0 = mask256(vn), m1 = mask256(vn - 8);
#define LOAD0(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), m0))
#define LOAD1(p) (full ? _mm256_loadu_ps((p) + 8) : _mm256_maskload_ps((p) + 8, m1))
    if (e->first) {
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (e->bias) {
            b0 = LOAD0(e->bias);
            b1 = LOAD1(e->bias);
        }
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = b0;
            acc1[r] = b1;
            if (e->residual && !e->act) {
                acc0[r] = _mm256_add_ps(acc0[r], LOAD0(e->residual + r * e->ldr));
                acc1[r] = _mm256_add_ps(acc1[r], LOAD1(e->residual + r * e->ldr));
            }
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = LOAD0(c + r * ldc);
            acc1[r] = LOAD1(c + r * ldc);
        }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_loadu_ps(bp + kk * PANEL), b1 = _mm256_loadu_ps(bp + kk * PANEL + 8);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * lda + kk);
            acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
        }
    }
    if (e->last && e->act == 1) {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = gelu256(acc0[r]);
            acc1[r] = gelu256(acc1[r]);
            if (e->residual) {
                acc0[r] = _mm256_add_ps(acc0[r], LOAD0(e->residual + r * e->ldr));
                acc1[r] = _mm256_add_ps(acc1[r], LOAD1(e->residual + r * e->ldr));
            }
        }
    }
    if (full) {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_ps(c + r * ldc, acc0[r]);
            _mm256_storeu_ps(c + r * ldc + 8, acc1[r]);
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            _mm256_maskstore_ps(c + r * ldc, m0, acc0[r]);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, acc1[r]);
        }
    }
#undef LOAD0
#undef LOAD1
}

#define DEF_TILE256(R)                                                                          \
    static T256 void tile256_##R(int64_t kc, const float *a, int64_t lda, const float *bp,     \
                                 float *c, int64_t ldc, const tile_ep *e) {                      \
        tile256(R, kc, a, lda, bp, c, ldc, e);                                                   \
    }
DEF_TILE256(1) DEF_TILE256(2) DEF_TILE256(3) DEF_TILE256(4) DEF_TILE256(5) DEF_TILE256(6)

static const tile_fn TILES256[MR256 + 1] = {
    0, tile256_1, tile256_2, tile256_3, tile256_4, tile256_5, tile256_6,
};

// MARK: - Driver

// Runs the loop nest with tiles `mr_max` rows by `tile_n` columns (32 for AVX-512: a whole
// panel; 16 for AVX2: half a panel).
static void gemm_blocked(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *packed_b, const float *bias, int act,
                         const float *residual, int64_t ldr, float *c, int64_t ldc,
                         const tile_fn *tiles, int mr_max, int tile_n) {
    if (m <= 0 || n <= 0) return;
    const int64_t kcb = k_block(m, n, k, act, residual, ldr, c, ldc);
    const int64_t mcb = (GEMM_MC / mr_max) * mr_max;
    const int64_t panels = (n + PANEL - 1) / PANEL;
    for (int64_t m0 = 0; m0 < m; m0 += mcb) {
        const int64_t m1 = m0 + mcb < m ? m0 + mcb : m;
        int64_t k0 = 0;
        do {
            const int64_t kc = k - k0 < kcb ? k - k0 : kcb;
            tile_ep e;
            e.ldr = ldr;
            e.act = act;
            e.first = k0 == 0;
            e.last = k0 + kc >= k;
            for (int64_t p = 0; p < panels; p++) {
                for (int64_t j0 = p * PANEL; j0 < (p + 1) * PANEL && j0 < n; j0 += tile_n) {
                    const float *bp = packed_b + p * PANEL * k + k0 * PANEL + (j0 - p * PANEL);
                    e.bias = bias ? bias + j0 : NULL;
                    e.valid_n = n - j0;
                    for (int64_t i = m0; i < m1; i += mr_max) {
                        const int64_t mr = m1 - i < mr_max ? m1 - i : mr_max;
                        e.residual = residual ? residual + i * ldr + j0 : NULL;
                        tiles[mr](kc, a + i * lda + k0, lda, bp, c + i * ldc + j0, ldc, &e);
                    }
                }
            }
            k0 += kc;
        } while (k0 < k);
    }
}

void cnx_gemm_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *packed_b, const float *bias, int act, const float *residual,
                  int64_t ldr, float *c, int64_t ldc) {
    switch (cnx_isa_current()) {
    case CNX_ISA_AVX512:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES512, MR512, 32);
        return;
    case CNX_ISA_AVX2:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES256, MR256, 16);
        return;
    default:
        cnx_gemm_f32_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
}
