// GEMM with a fused epilogue (bias, exact GELU, residual) for the pointwise layers, and the
// elementwise GELU that shares its vectorised form.
//
// Layout: B is packed once into panels of 32 columns, K-major inside a panel, so a K block of a
// panel is one contiguous run. A is read in place (rows contiguous, leading dimension lda).
// Loop nest of the SIMD paths, per call:
//   rows in blocks of MC -> K in blocks of at most KC -> 32-column panels -> micro-tiles of MR rows.
// The panel's K block stays in L1 while the row block's MR-row tiles stream their A rows past
// it; the first tile of a panel prefetches the next panel's K block (B comes from L3 or memory
// when the layer is large and m small). Partial sums of earlier K blocks live in C. The bias
// (and a residual not behind a GELU) initialise the accumulators; GELU, and a residual after
// it, run after the last K block on the tile while it is in registers or L1.
#include "cnx_fast.h"
#include "gelu_table.h"
#include "neon_internal.h"

#include <math.h>
#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#include <immintrin.h>
#endif

#define PANEL CNX_GEMM_PANEL
#define INV_SQRT2 0.70710678118654752f

// MARK: - Scalar reference

static inline float gelu_scalar(float x) { return 0.5f * x * (1.0f + erff(x * INV_SQRT2)); }

void cnx_gelu_inplace_f32_ref(float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] = gelu_scalar(x[i]);
}

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

#if CNX_X86

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// Blocking. A panel's K block (KC x 32 floats: 32 KB at KC = 256) and a 14-row A tile (14 KB)
// share the 48 KB L1; a row block's A (MC x KC) and C stay in L2. K is split into equal blocks
// of at most KC. Measured on Zen 5: KC 192..320 and MC 56..252 are all within 2-3 %.
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_MC
#define GEMM_MC 112
#endif
#define MR512 14   // AVX-512 tile: 14 rows x 32 columns = 28 zmm accumulators
#define MR256 6    // AVX2 tile:     6 rows x 16 columns = 12 ymm accumulators

// MARK: - Vector GELU

// GELU(x) = x Phi(x) = max(x, 0) - |x| Q(|x|), with Q(a) = Phi(-a) = erfc(a / sqrt 2) / 2.
// This form needs no sign juggling and no 1 + erf(x) cancellation, and a |x| Q(|x|) is below 7e-9
// past |x| = 6, where it is dropped (so huge |x| and infinities come out exact).
// Q on [0, 6) is piecewise polynomial: n equal intervals, on each a polynomial in the position
// u in [0, 1) inside the interval, fitted (minimax on a |P(u) - Q(a)|, by reweighted least squares)
// and rounded to float. A lane permute fetches each lane's coefficients: row j of a table holds
// the coefficients of u^j, one column per interval. With float arithmetic the result is within
// 4e-8 of GELU beyond the final rounding.
//   AVX-512: 16 intervals (one zmm permute), degree 5.  AVX2: 8 intervals (ymm permute), degree 6.
#define GELU_AMAX 6.0f

#define GELU_Q16 cnx_gelu_q16  // gelu_table.c
static const float GELU_Q8[7][8] __attribute__((aligned(32))) = {
    {5.000000000e-01f, 2.266273350e-01f, 6.680720299e-02f, 1.222447678e-02f, 1.349897939e-03f, 8.841690578e-05f, 3.397613000e-06f, 7.604597130e-08f},
    {-2.992078662e-01f, -2.258513868e-01f, -9.713809937e-02f, -2.380514331e-02f, -3.323879791e-03f, -2.644097258e-04f, -1.198178597e-05f, -3.092642089e-07f},
    {1.924149910e-05f, 6.349641085e-02f, 5.463835225e-02f, 2.009163052e-02f, 3.739341162e-03f, 3.712841426e-04f, 2.013012636e-05f, 6.033505997e-07f},
    {2.793110162e-02f, 9.402290918e-03f, -1.136922929e-02f, -9.104431607e-03f, -2.493218053e-03f, -3.202434746e-04f, -2.101216887e-05f, -7.310265460e-07f},
    {3.578190226e-04f, -7.629821543e-03f, -1.973715378e-03f, 2.051529242e-03f, 1.054482418e-03f, 1.823462517e-04f, 1.446083934e-05f, 5.759105761e-07f},
    {-2.928650705e-03f, 5.405119155e-04f, 1.500571263e-03f, -5.386496559e-05f, -2.717253810e-04f, -6.520682655e-05f, -6.121121714e-06f, -2.719035592e-07f},
    {4.557005304e-04f, 2.218740847e-04f, -2.406072017e-04f, -5.430297460e-05f, 3.351913256e-05f, 1.121070636e-05f, 1.202599492e-06f, 5.787691393e-08f},
};


INLINE T512 __m512 gelu512(__m512 x) {
    const __m512 a = _mm512_abs_ps(x);
    // Interval position; the clamp keeps the index below 16 (NaN -> 15.99999; masked off below).
    const __m512 s = _mm512_min_ps(_mm512_mul_ps(a, _mm512_set1_ps(16.0f / GELU_AMAX)), _mm512_set1_ps(15.99999f));
    const __m512 f = _mm512_roundscale_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512i idx = _mm512_cvttps_epi32(f);
    const __m512 u = _mm512_sub_ps(s, f);
    __m512 p = _mm512_permutexvar_ps(idx, _mm512_load_ps(GELU_Q16[5]));
    for (int j = 4; j >= 0; j--)
        p = _mm512_fmadd_ps(p, u, _mm512_permutexvar_ps(idx, _mm512_load_ps(GELU_Q16[j])));
    const __m512 relu = _mm512_max_ps(_mm512_setzero_ps(), x);  // NaN stays NaN (second operand)
    const __mmask16 near = _mm512_cmp_ps_mask(a, _mm512_set1_ps(GELU_AMAX), _CMP_LT_OQ);
    return _mm512_mask3_fnmadd_ps(a, p, relu, near);  // relu - a p where |x| < 6, else relu
}

INLINE T256 __m256 gelu256(__m256 x) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 s = _mm256_min_ps(_mm256_mul_ps(a, _mm256_set1_ps(8.0f / GELU_AMAX)), _mm256_set1_ps(7.99999f));
    const __m256 f = _mm256_round_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m256i idx = _mm256_cvttps_epi32(f);
    const __m256 u = _mm256_sub_ps(s, f);
    __m256 p = _mm256_permutevar8x32_ps(_mm256_load_ps(GELU_Q8[6]), idx);
    for (int j = 5; j >= 0; j--)
        p = _mm256_fmadd_ps(p, u, _mm256_permutevar8x32_ps(_mm256_load_ps(GELU_Q8[j]), idx));
    const __m256 relu = _mm256_max_ps(_mm256_setzero_ps(), x);
    const __m256 near = _mm256_cmp_ps(a, _mm256_set1_ps(GELU_AMAX), _CMP_LT_OQ);
    return _mm256_sub_ps(relu, _mm256_and_ps(near, _mm256_mul_ps(a, p)));
}

INLINE T256 __m256i mask256(int64_t valid) {
    // Lanes [0, valid) set, valid clamped to [0, 8].
    if (valid < 0) valid = 0;
    if (valid > 8) valid = 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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

// MARK: - Blocking shared by the SIMD paths

typedef struct {
    const float *bias;      // at the tile's first column, or NULL
    const float *residual;  // at the tile's first row and column, or NULL
    int64_t ldr;
    int act;
    int first, last;        // first / last K block: initialise from bias / run the epilogue
    int64_t valid_n;        // columns of the tile inside C (may exceed the tile width)
    const float *prefetch;  // the next panel's K block, prefetched by a panel's first tile; or NULL
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
    const float *pf = e->prefetch;
    for (int64_t kk = 0; kk < kc; kk++) {
        if (pf) {
            _mm_prefetch((const char *)(pf + kk * PANEL), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + kk * PANEL + 16), _MM_HINT_T0);
        }
        const __m512 b0 = _mm512_loadu_ps(bp + kk * PANEL), b1 = _mm512_loadu_ps(bp + kk * PANEL + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    if (e->last && e->act == 1) {
        // GELU (and the residual after it) from a copy of the tile in L1: a plain loop keeps the
        // 28 accumulators from competing with GELU's temporaries for registers. The copy is not
        // C itself, because the residual may be C.
        __m512 tile[MR512][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            tile[r][0] = acc0[r];
            tile[r][1] = acc1[r];
        }
        const float *res = e->residual;
        for (int r = 0; r < MR; r++) {
            __m512 v0 = gelu512(tile[r][0]), v1 = gelu512(tile[r][1]);
            if (res) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, res + r * e->ldr));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, res + r * e->ldr + 16));
            }
            _mm512_mask_storeu_ps(c + r * ldc, m0, v0);
            _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v1);
        }
        return;
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
    const int64_t panels = (n + PANEL - 1) / PANEL;
    // Row blocks of at most MC rows, as equal as whole tiles allow; inside a block, tiles of
    // nearly equal height (64 rows: 13 13 13 13 12, not 14 14 14 14 8), since a short tile has
    // too few accumulators to cover the FMA latency.
    const int64_t max_tiles = GEMM_MC / mr_max;
    const int64_t tiles_total = (m + mr_max - 1) / mr_max;
    const int64_t blocks = (tiles_total + max_tiles - 1) / max_tiles;
    const int64_t block_tiles = (tiles_total + blocks - 1) / blocks;
    for (int64_t m0 = 0; m0 < m;) {
        const int64_t m1 = m0 + block_tiles * mr_max < m ? m0 + block_tiles * mr_max : m;
        const int64_t rows = m1 - m0, ntiles = (rows + mr_max - 1) / mr_max;
        const int64_t tile_rows = rows / ntiles, taller = rows % ntiles;  // first `taller` get +1
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
                    for (int64_t t = 0, i = m0; t < ntiles; t++) {
                        const int64_t mr = tile_rows + (t < taller);
                        e.prefetch = (i == m0 && p + 1 < panels && tile_n == PANEL) ? bp + PANEL * k : NULL;
                        e.residual = residual ? residual + i * ldr + j0 : NULL;
                        tiles[mr](kc, a + i * lda + k0, lda, bp, c + i * ldc + j0, ldc, &e);
                        i += mr;
                    }
                }
            }
            k0 += kc;
        } while (k0 < k);
        m0 = m1;
    }
}

#endif  // CNX_X86

// MARK: - Dispatch

void cnx_gelu_inplace_f32(float *x, int64_t count) {
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: gelu_inplace_avx512(x, count); return;
    case CNX_ISA_AVX2: gelu_inplace_avx2(x, count); return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_activation_inplace_f32_neon(x, count, 1); return;
#endif
    default: cnx_gelu_inplace_f32_ref(x, count); return;
    }
}

void cnx_gemm_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *packed_b, const float *bias, int act, const float *residual,
                  int64_t ldr, float *c, int64_t ldc) {
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES512, MR512, 32);
        return;
    case CNX_ISA_AVX2:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES256, MR256, 16);
        return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_gemm_f32_neon(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc); return;
#endif
    default:
        cnx_gemm_f32_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
}
