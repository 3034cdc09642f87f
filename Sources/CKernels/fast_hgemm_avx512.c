// AVX-512 kernels of the half-precision-weight GEMM (cnx_half.h): tiles of up to 14 rows x 32
// columns (28 zmm accumulators), as the float GEMM's, over the packed half panels.
//   bf16 dot: the row block's activations are rounded to bfloat16 once per K block
//     (vcvtne2ps2bf16) into a stack buffer of pairs; each pair of k is one 32-bit broadcast and
//     one vdpbf16ps per 16 columns.
//   bf16 widened: a pair row of the panel (64 bytes per 16 columns) gives the even-k weights by a
//     16-bit left shift and the odd-k weights by masking the low half; float FMAs in k order.
//   float16: 16 halves widened by vcvtph2ps; float FMAs in k order.
// The tile's two ends (bias, residual, activation) are the float GEMM's (gemm_tile512.h).
#include "cnx_half.h"
#include "cnx_fast.h"

#include "activation.h"
#include "gemm_tile512.h"
#include "hgemm_internal.h"

#include <stdint.h>
#include <time.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T512BF __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

#define PANEL CNX_HPANEL
#define MR CNX_TILE512_MR
// K block in pairs of k (bf16 kinds) or in rows (float16): a panel's K block is 256 k x 32
// columns of halves, 16 KB, in L1 beside a tile's activations.
#define KCP 128
#define KC16 256
// Rows per row block: the bf16 activations of a row block and K block take MCH x KCP x 4 bytes
// (32 KB) of stack.
#define MCH 64

typedef cnx_tile_ep hep;

// acc{0,1}[r] += a[r * lda] (w0, w1) for the tile's rows, in float FMAs.
INLINE T512 void fma_rows(const int R, __m512 *acc0, __m512 *acc1, const float *a, int64_t lda, __m512 w0, __m512 w1) {
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        const __m512 x = _mm512_set1_ps(a[r * lda]);
        acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(x, w1, acc1[r]);
    }
}

// acc{0,1}[r] += the tile's rows of bf16 pairs a (lda in pairs) times `steps` pair rows of the
// panel bp, by vdpbf16ps.
INLINE T512BF void dot_steps(const int R, __m512 *acc0, __m512 *acc1, const uint32_t *a, int64_t lda, const uint16_t *bp,
                             int64_t steps) {
    for (int64_t q = 0; q < steps; q++) {
        const __m512i w0 = _mm512_loadu_si512(bp + q * 2 * PANEL), w1 = _mm512_loadu_si512(bp + q * 2 * PANEL + PANEL);
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            const __m512i ap = _mm512_set1_epi32((int)a[r * lda + q]);
            acc0[r] = _mm512_dpbf16_ps(acc0[r], (__m512bh)ap, (__m512bh)w0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], (__m512bh)ap, (__m512bh)w1);
        }
    }
}

// One tile. KIND: CNX_HK_*. steps: pairs of k (bf16 kinds; for the widened kind, whole pairs,
// then the even half of one more when e->odd_tail) or rows of k (float16). a: the bf16 pairs
// buffer (dot; lda in pairs) or the float activations (lda in floats) at the block's first k.
INLINE T512BF void htile(const int KIND, const int R, int64_t steps, const void *av, int64_t lda,
                         const uint16_t *bp, float *c, int64_t ldc, const hep *e) {
    __m512 acc0[MR], acc1[MR];
    CNX_TILE512_MASKS(e->valid_n, m0, m1);
    cnx_tile512_start(R, acc0, acc1, c, ldc, e, m0, m1);
    if (KIND == CNX_HK_BF16_DOT) {
        dot_steps(R, acc0, acc1, (const uint32_t *)av, lda, bp, steps);
    } else if (KIND == CNX_HK_BF16_WIDE) {
        const float *a = (const float *)av;
        const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
        const int64_t total = steps + (e->odd_tail ? 1 : 0);
        for (int64_t q = 0; q < total; q++) {
            const __m512i v0 = _mm512_loadu_si512(bp + q * 2 * PANEL), v1 = _mm512_loadu_si512(bp + q * 2 * PANEL + PANEL);
            // Even k: the weight in the high half of its lane, by a shift.
            fma_rows(R, acc0, acc1, a + 2 * q, lda, _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)),
                     _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)));
            if (q == steps) break;  // the odd tail: no k past the even one
            // Odd k: already in the high half; the low half masked off.
            fma_rows(R, acc0, acc1, a + 2 * q + 1, lda, _mm512_castsi512_ps(_mm512_and_si512(v0, high)),
                     _mm512_castsi512_ps(_mm512_and_si512(v1, high)));
        }
    } else {
        const float *a = (const float *)av;
        for (int64_t kk = 0; kk < steps; kk++)
            fma_rows(R, acc0, acc1, a + kk, lda, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(bp + kk * PANEL))),
                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(bp + kk * PANEL + 16))));
    }
    cnx_tile512_finish(R, acc0, acc1, c, ldc, e, m0, m1);
}

typedef void (*htile_fn)(int64_t steps, const void *a, int64_t lda, const uint16_t *bp, float *c, int64_t ldc,
                         const hep *e);

// One instantiation per kind and tile height, R = 1..14.
#define HTILE(KIND, R)                                                                                \
    static T512BF void htile_##KIND##_##R(int64_t steps, const void *a, int64_t lda, const uint16_t *bp, \
                                          float *c, int64_t ldc, const hep *e) {                      \
        htile(KIND, R, steps, a, lda, bp, c, ldc, e);                                                 \
    }
#define HTILES(X, KIND) X(KIND, 1) X(KIND, 2) X(KIND, 3) X(KIND, 4) X(KIND, 5) X(KIND, 6) X(KIND, 7) \
    X(KIND, 8) X(KIND, 9) X(KIND, 10) X(KIND, 11) X(KIND, 12) X(KIND, 13) X(KIND, 14)
#define HTILE_ENTRY(KIND, R) htile_##KIND##_##R,
HTILES(HTILE, 0) HTILES(HTILE, 1) HTILES(HTILE, 2)
// By kind (CNX_HK_*), then height.
static const htile_fn TILES[3][MR + 1] = {
    {0, HTILES(HTILE_ENTRY, 0)}, {0, HTILES(HTILE_ENTRY, 1)}, {0, HTILES(HTILE_ENTRY, 2)},
};

// Rounds `rows` activation rows (floats [0, count) of each) to bfloat16 pairs, row r at
// dst + r * KCP; a missing odd k is zero.
static T512BF void round_rows(const float *a, int64_t lda, int64_t rows, int64_t count, uint32_t *dst) {
    for (int64_t r = 0; r < rows; r++) {
        const float *src = a + r * lda;
        uint32_t *d = dst + r * KCP;
        for (int64_t j = 0; j < count; j += 32) {
            const int64_t rest = count - j;
            const __mmask16 lo = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
            const __mmask16 hi = rest >= 32 ? 0xFFFF : rest <= 16 ? 0 : (__mmask16)((1u << (rest - 16)) - 1);
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + j + 16), _mm512_maskz_loadu_ps(lo, src + j));
            _mm512_storeu_si512(d + j / 2, (__m512i)v);
        }
    }
}

void cnx_hgemm_avx512(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const uint16_t *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    const int f16 = kind == CNX_HK_F16;
    const int64_t kp2 = k + (k & 1);
    const int64_t panel_halves = PANEL * kp2;
    // Steps: pairs of k for bf16, rows for float16.
    const int64_t steps = f16 ? k : kp2 / 2, step_max = f16 ? KC16 : KCP;
    int64_t kcb = steps;
    int one_block = 0;
    if (residual && act) {
        // The residual must survive in memory until the last K block, which it does not if it
        // overlaps C, which holds partial sums: then K runs in one block.
        const float *r_end = residual + (m - 1) * ldr + n, *c_end = c + (m - 1) * ldc + n;
        one_block = residual < c_end && c < r_end;
    }
    if (kind == CNX_HK_BF16_DOT && one_block && steps > KCP) {
        // The dot kind's bf16 buffer holds one K block. A residual behind an activation that
        // overlaps C (no ConvNeXt layer has one: the second layer adds the residual without an
        // activation) with K past one block takes the twin, which gives the same bits.
        cnx_gemm_bf16_dot_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
    if (steps > step_max && !one_block) {
        const int64_t blocks = (steps + step_max - 1) / step_max;
        kcb = (steps + blocks - 1) / blocks;
    }
    const htile_fn *tiles = TILES[kind];
    const int64_t panels = (n + PANEL - 1) / PANEL;
    const int64_t row_block = kind == CNX_HK_BF16_DOT ? MCH : 112;
    __attribute__((aligned(64))) uint32_t pairs[kind == CNX_HK_BF16_DOT ? MCH * KCP : 1];
    for (int64_t m0 = 0; m0 < m; m0 += row_block) {
        const int64_t rows = m - m0 < row_block ? m - m0 : row_block;
        const int64_t ntiles = (rows + MR - 1) / MR;
        const int64_t tile_rows = rows / ntiles, taller = rows % ntiles;
        int64_t s0 = 0;
        do {
            const int64_t sc = steps - s0 < kcb ? steps - s0 : kcb;
            const int last = s0 + sc >= steps;
            hep e = {.ldr = ldr, .act = act, .first = s0 == 0, .last = last, .odd_tail = kind == CNX_HK_BF16_WIDE && last && (k & 1) && sc > 0};
            const int64_t tile_steps = e.odd_tail ? sc - 1 : sc;
            if (kind == CNX_HK_BF16_DOT) {
                const int64_t k0 = 2 * s0, count = k - k0 < 2 * sc ? k - k0 : 2 * sc;
                round_rows(a + m0 * lda + k0, lda, rows, count, pairs);
            }
            for (int64_t p = 0; p < panels; p++) {
                const int64_t j0 = p * PANEL;
                const uint16_t *bp = packed_b + p * panel_halves + (f16 ? s0 * PANEL : s0 * 2 * PANEL);
                e.bias = bias ? bias + j0 : NULL;
                e.valid_n = n - j0;
                for (int64_t t = 0, i = m0; t < ntiles; t++) {
                    const int64_t mr = tile_rows + (t < taller);
                    e.residual = residual ? residual + i * ldr + j0 : NULL;
                    const void *ap;
                    int64_t alda;
                    if (kind == CNX_HK_BF16_DOT) {
                        ap = pairs + (i - m0) * KCP;
                        alda = KCP;
                    } else {
                        ap = a + i * lda + (f16 ? s0 : 2 * s0);
                        alda = lda;
                    }
                    tiles[mr](tile_steps, ap, alda, bp, c + i * ldc + j0, ldc, &e);
                    i += mr;
                }
            }
            s0 += sc;
        } while (s0 < steps);
    }
}

// MARK: - Activations already in bfloat16

// The epilogue of a tile with bfloat16 output: the activation, the residual, then rounding to
// bfloat16 (vcvtneps2bf16: nearest even, denormals to zero, as the dot path rounds its inputs).
static T512BF __attribute__((noinline)) void act16(int act, int mr, __m512 (*tile)[2], uint16_t *c, int64_t ldc, const hep *e,
                                                   __mmask16 m0, __mmask16 m1) {
#define ACT16_BODY(ACT)                                                                                    \
    for (int r = 0; r < mr; r++) {                                                                         \
        __m512 v[2] = {tile[r][0], tile[r][1]};                                                            \
        cnx_act512_n(ACT, 2, v);                                                                           \
        if (e->residual) {                                                                                 \
            v[0] = _mm512_add_ps(v[0], _mm512_maskz_loadu_ps(m0, e->residual + r * e->ldr));               \
            v[1] = _mm512_add_ps(v[1], _mm512_maskz_loadu_ps(m1, e->residual + r * e->ldr + 16));          \
        }                                                                                                  \
        _mm256_mask_storeu_epi16(c + r * ldc, m0, (__m256i)_mm512_cvtneps_pbh(v[0]));                      \
        _mm256_mask_storeu_epi16(c + r * ldc + 16, m1, (__m256i)_mm512_cvtneps_pbh(v[1]));                 \
    }
    CNX_ACT_DISPATCH(act, ACT16_BODY);
#undef ACT16_BODY
}

// One tile over the whole of K (one block): a bf16 pairs (lda in pairs); output float c (the
// float GEMM's epilogue) or, when c16 is set, bfloat16 c16.
INLINE T512BF void htile_a16(const int R, int64_t steps, const uint32_t *a, int64_t lda, const uint16_t *bp, float *c, uint16_t *c16,
                             int64_t ldc, const hep *e) {
    __m512 acc0[MR], acc1[MR];
    CNX_TILE512_MASKS(e->valid_n, m0, m1);
    cnx_tile512_start(R, acc0, acc1, c, ldc, e, m0, m1);
    dot_steps(R, acc0, acc1, a, lda, bp, steps);
    if (!c16) {
        cnx_tile512_finish(R, acc0, acc1, c, ldc, e, m0, m1);
        return;
    }
    __m512 tile[MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) tile[r][0] = acc0[r], tile[r][1] = acc1[r];
    // The residual was folded in at the start when there is no activation.
    hep e16 = *e;
    if (!e->act) e16.residual = NULL;
    act16(e->act, R, tile, c16, ldc, &e16, m0, m1);
}

typedef void (*htile16_fn)(int64_t steps, const uint32_t *a, int64_t lda, const uint16_t *bp, float *c, uint16_t *c16,
                           int64_t ldc, const hep *e);
#define HTILE16(KIND, R)                                                                                        \
    static T512BF void htile16_##R(int64_t steps, const uint32_t *a, int64_t lda, const uint16_t *bp, float *c, \
                                   uint16_t *c16, int64_t ldc, const hep *e) {                                  \
        htile_a16(R, steps, a, lda, bp, c, c16, ldc, e);                                                        \
    }
#define HTILE16_ENTRY(KIND, R) htile16_##R,
HTILES(HTILE16, 0)
static const htile16_fn TILES16[MR + 1] = {0, HTILES(HTILE16_ENTRY, 0)};

void cnx_hgemm_a16_avx512bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                              const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16,
                              int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    const int64_t steps = k / 2, panels = (n + PANEL - 1) / PANEL;
    // Row blocks of at most MCH rows, as even as the tiles allow: a block's activations (MCH rows
    // of k halves) stay in L2 while every panel passes over them.
    const int64_t blocks = (m + MCH - 1) / MCH;
    for (int64_t b = 0, m0 = 0; b < blocks; b++) {
        const int64_t rows = (m - m0) / (blocks - b);
        const int64_t ntiles = (rows + MR - 1) / MR;
        const int64_t tile_rows = rows / ntiles, taller = rows % ntiles;
        for (int64_t p = 0; p < panels; p++) {
            const int64_t j0 = p * PANEL;
            hep e = {.ldr = ldr, .act = act, .first = 1, .last = 1, .bias = bias ? bias + j0 : NULL, .valid_n = n - j0};
            const uint16_t *bp = packed_b + p * PANEL * k;
            for (int64_t t = 0, i = m0; t < ntiles; t++) {
                const int64_t mr = tile_rows + (t < taller);
                e.residual = residual ? residual + i * ldr + j0 : NULL;
                TILES16[mr](steps, (const uint32_t *)(a + i * lda), lda / 2, bp, c ? c + i * ldc + j0 : NULL,
                            c16 ? c16 + i * ldc + j0 : NULL, ldc, &e);
                i += mr;
            }
        }
        m0 += rows;
    }
}

// Rounds count floats to bfloat16 (vcvtneps2bf16), 16 at a time.
T512BF void cnx_round_bf16_avx512bf16(const float *x, int64_t count, uint16_t *y) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) _mm256_storeu_si256((__m256i *)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
    if (i < count) {
        const __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        _mm256_mask_storeu_epi16(y + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

// MARK: - Does the dot product pay here?

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define RATIO_CHAINS 24
#define RATIO_STEPS 4096

// The body of a timing: RATIO_STEPS x RATIO_CHAINS of acc[j] = STEP, each chain its own
// register; the empty asm keeps every chain live and in a register. Returns the seconds taken.
#define TIME_CHAINS(STEP)                                                                       \
    const double t0 = seconds_now();                                                            \
    for (int s = 0; s < RATIO_STEPS; s++) {                                                     \
        _Pragma("clang loop unroll(full)") for (int j = 0; j < RATIO_CHAINS; j++) {             \
            acc[j] = STEP;                                                                      \
            __asm__ volatile("" : "+v"(acc[j]));                                                \
        }                                                                                       \
    }                                                                                           \
    return seconds_now() - t0;

static T512BF double time_dot(__m512 *acc) {
    const __m512bh one = (__m512bh)_mm512_set1_epi32(0x3F803F80);  // two bfloat16 1.0s
    TIME_CHAINS(_mm512_dpbf16_ps(acc[j], one, one))
}

static T512 double time_fma(__m512 *acc) {
    const __m512 one = _mm512_set1_ps(1.0f);
    TIME_CHAINS(_mm512_fmadd_ps(acc[j], one, one))
}

#undef TIME_CHAINS

T512BF double cnx_bf16_dot_time_ratio_avx512bf16(void) {
    __m512 acc[RATIO_CHAINS];
    for (int j = 0; j < RATIO_CHAINS; j++) acc[j] = _mm512_setzero_ps();
    // The first pair warms the vector units (and their clock) up and is not counted; the least
    // of the rest is the undisturbed time (another process can only slow a try down).
    double dot = 1e30, fma = 1e30;
    for (int r = 0; r < 10; r++) {
        const double d = time_dot(acc), f = time_fma(acc);
        if (r == 0) continue;
        if (d < dot) dot = d;
        if (f < fma) fma = f;
    }
    __m512 sum = acc[0];
    for (int j = 1; j < RATIO_CHAINS; j++) sum = _mm512_add_ps(sum, acc[j]);
    volatile float sink = _mm512_reduce_add_ps(sum);  // every chain's result used
    (void)sink;
    return fma > 0 ? dot / fma : 1.0;
}

#undef RATIO_CHAINS
#undef RATIO_STEPS

#else

void cnx_hgemm_avx512(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const uint16_t *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    (void)kind;
    cnx_gemm_bf16_wide_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

void cnx_hgemm_a16_avx512bf16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                              const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16,
                              int64_t ldc) {
    cnx_gemm_bf16_a16_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, c16, ldc);
}

void cnx_round_bf16_avx512bf16(const float *x, int64_t count, uint16_t *y) { cnx_round_bf16_ref(x, count, y); }

double cnx_bf16_dot_time_ratio_avx512bf16(void) { return 1.0; }

#endif
