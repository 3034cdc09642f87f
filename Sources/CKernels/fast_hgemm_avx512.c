// AVX-512 kernels of the half-precision-weight GEMM (cnx_half.h): tiles of up to 14 rows x 32
// columns (28 zmm accumulators), as the float GEMM's, over the packed half panels.
//   bf16 dot: the row block's activations are rounded to bfloat16 once per K block
//     (vcvtne2ps2bf16) into a stack buffer of pairs; each pair of k is one 32-bit broadcast and
//     one vdpbf16ps per 16 columns.
//   bf16 widened: a pair row of the panel (64 bytes per 16 columns) gives the even-k weights by a
//     16-bit left shift and the odd-k weights by masking the low half; float FMAs in k order.
//   float16: 16 halves widened by vcvtph2ps; float FMAs in k order.
// Epilogue as fast_gemm.c: bias (and a residual not behind an activation) initialise the
// accumulators; the activation and a residual after it run on the finished tile.
#include "cnx_half.h"
#include "cnx_fast.h"

#include "activation.h"
#include "hgemm_internal.h"

#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T512BF __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

#define PANEL CNX_HPANEL
#define MR 14
// K block in pairs of k (bf16 kinds) or in rows (float16): a panel's K block is 256 k x 32
// columns of halves, 16 KB, in L1 beside a tile's activations.
#define KCP 128
#define KC16 256
// Rows per row block: the bf16 activations of a row block and K block take MCH x KCP x 4 bytes
// (32 KB) of stack.
#define MCH 64

typedef struct {
    const float *bias;      // at the tile's first column, or NULL
    const float *residual;  // at the tile's first row and column, or NULL
    int64_t ldr;
    int act;
    int first, last;        // first / last K block
    int odd_tail;           // widened bf16, last K block, k odd: the last pair has its even k only
    int64_t valid_n;        // columns of the tile inside C
} hep;

INLINE T512 void act_rows(const int ACT, int mr, __m512 (*tile)[2], float *c, int64_t ldc, const hep *e,
                          __mmask16 m0, __mmask16 m1) {
    const float *res = e->residual;
    for (int r = 0; r < mr; r++) {
        __m512 v[2] = {tile[r][0], tile[r][1]};
        cnx_act512_n(ACT, 2, v);
        if (res) {
            v[0] = _mm512_add_ps(v[0], _mm512_maskz_loadu_ps(m0, res + r * e->ldr));
            v[1] = _mm512_add_ps(v[1], _mm512_maskz_loadu_ps(m1, res + r * e->ldr + 16));
        }
        _mm512_mask_storeu_ps(c + r * ldc, m0, v[0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v[1]);
    }
}

static T512 __attribute__((noinline)) void tile_act(int act, int mr, __m512 (*tile)[2], float *c, int64_t ldc,
                                                    const hep *e, __mmask16 m0, __mmask16 m1) {
#define BODY(ACT) act_rows(ACT, mr, tile, c, ldc, e, m0, m1)
    CNX_ACT_DISPATCH(act, BODY);
#undef BODY
}

// One tile. KIND: CNX_HK_*. steps: pairs of k (bf16 kinds; for the widened kind, whole pairs,
// then the even half of one more when e->odd_tail) or rows of k (float16). a: the bf16 pairs
// buffer (dot; lda in pairs) or the float activations (lda in floats) at the block's first k.
INLINE T512BF void htile(const int KIND, const int R, int64_t steps, const void *av, int64_t lda,
                         const uint16_t *bp, float *c, int64_t ldc, const hep *e) {
    __m512 acc0[MR], acc1[MR];
    const int64_t vn = e->valid_n;
    const __mmask16 m0 = vn >= 16 ? 0xFFFF : (__mmask16)((1u << vn) - 1);
    const __mmask16 m1 = vn >= 32 ? 0xFFFF : vn <= 16 ? 0 : (__mmask16)((1u << (vn - 16)) - 1);
    if (e->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (e->bias) {
            b0 = _mm512_maskz_loadu_ps(m0, e->bias);
            b1 = _mm512_maskz_loadu_ps(m1, e->bias + 16);
        }
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            acc0[r] = b0;
            acc1[r] = b1;
            if (e->residual && !e->act) {
                acc0[r] = _mm512_add_ps(b0, _mm512_maskz_loadu_ps(m0, e->residual + r * e->ldr));
                acc1[r] = _mm512_add_ps(b1, _mm512_maskz_loadu_ps(m1, e->residual + r * e->ldr + 16));
            }
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            acc0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
            acc1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        }
    }
    if (KIND == CNX_HK_BF16_DOT) {
        const uint32_t *a = (const uint32_t *)av;
        for (int64_t q = 0; q < steps; q++) {
            const __m512i w0 = _mm512_loadu_si512(bp + q * 2 * PANEL), w1 = _mm512_loadu_si512(bp + q * 2 * PANEL + PANEL);
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                const __m512i ap = _mm512_set1_epi32((int)a[r * lda + q]);
                acc0[r] = _mm512_dpbf16_ps(acc0[r], (__m512bh)ap, (__m512bh)w0);
                acc1[r] = _mm512_dpbf16_ps(acc1[r], (__m512bh)ap, (__m512bh)w1);
            }
        }
    } else if (KIND == CNX_HK_BF16_WIDE) {
        const float *a = (const float *)av;
        const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
        const int64_t total = steps + (e->odd_tail ? 1 : 0);
        for (int64_t q = 0; q < total; q++) {
            const __m512i v0 = _mm512_loadu_si512(bp + q * 2 * PANEL), v1 = _mm512_loadu_si512(bp + q * 2 * PANEL + PANEL);
            {
                const __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16));
                const __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16));
#pragma clang loop unroll(full)
                for (int r = 0; r < R; r++) {
                    const __m512 x = _mm512_set1_ps(a[r * lda + 2 * q]);
                    acc0[r] = _mm512_fmadd_ps(x, e0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(x, e1, acc1[r]);
                }
            }
            if (q == steps) break;  // the odd tail: no k past the even one
            const __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(v0, high));
            const __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(v1, high));
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                const __m512 x = _mm512_set1_ps(a[r * lda + 2 * q + 1]);
                acc0[r] = _mm512_fmadd_ps(x, o0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(x, o1, acc1[r]);
            }
        }
    } else {
        const float *a = (const float *)av;
        for (int64_t kk = 0; kk < steps; kk++) {
            const __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(bp + kk * PANEL)));
            const __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(bp + kk * PANEL + 16)));
#pragma clang loop unroll(full)
            for (int r = 0; r < R; r++) {
                const __m512 x = _mm512_set1_ps(a[r * lda + kk]);
                acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(x, w1, acc1[r]);
            }
        }
    }
    if (e->last && e->act) {
        __m512 tile[MR][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            tile[r][0] = acc0[r];
            tile[r][1] = acc1[r];
        }
        tile_act(e->act, R, tile, c, ldc, e, m0, m1);
        return;
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
}

typedef void (*htile_fn)(int64_t steps, const void *a, int64_t lda, const uint16_t *bp, float *c, int64_t ldc,
                         const hep *e);

#define DEF_TILE(KIND, NAME, R)                                                                       \
    static T512BF void NAME##_##R(int64_t steps, const void *a, int64_t lda, const uint16_t *bp,      \
                                  float *c, int64_t ldc, const hep *e) {                              \
        htile(KIND, R, steps, a, lda, bp, c, ldc, e);                                                 \
    }
#define DEF_TILES(KIND, NAME)                                                                         \
    DEF_TILE(KIND, NAME, 1) DEF_TILE(KIND, NAME, 2) DEF_TILE(KIND, NAME, 3) DEF_TILE(KIND, NAME, 4)   \
    DEF_TILE(KIND, NAME, 5) DEF_TILE(KIND, NAME, 6) DEF_TILE(KIND, NAME, 7) DEF_TILE(KIND, NAME, 8)   \
    DEF_TILE(KIND, NAME, 9) DEF_TILE(KIND, NAME, 10) DEF_TILE(KIND, NAME, 11)                         \
    DEF_TILE(KIND, NAME, 12) DEF_TILE(KIND, NAME, 13) DEF_TILE(KIND, NAME, 14)                        \
    static const htile_fn NAME[MR + 1] = {                                                            \
        0, NAME##_1, NAME##_2, NAME##_3, NAME##_4, NAME##_5, NAME##_6, NAME##_7,                      \
        NAME##_8, NAME##_9, NAME##_10, NAME##_11, NAME##_12, NAME##_13, NAME##_14,                    \
    };
DEF_TILES(CNX_HK_BF16_DOT, TILES_DOT)
DEF_TILES(CNX_HK_BF16_WIDE, TILES_WIDE)
DEF_TILES(CNX_HK_F16, TILES_F16)

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
    const htile_fn *tiles = kind == CNX_HK_BF16_DOT ? TILES_DOT : kind == CNX_HK_BF16_WIDE ? TILES_WIDE : TILES_F16;
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
            hep e;
            e.ldr = ldr;
            e.act = act;
            e.first = s0 == 0;
            e.last = s0 + sc >= steps;
            e.odd_tail = kind == CNX_HK_BF16_WIDE && e.last && (k & 1) && sc > 0;
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

#else

void cnx_hgemm_avx512(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const uint16_t *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    (void)kind;
    cnx_gemm_bf16_wide_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

#endif
