// arm64 (NEON) float kernels: the GEMM with its fused bias / activation / residual epilogue over
// cnx_gemm_pack_b's 32-column panels, and the elementwise activations (cnx_fast.h semantics).
//
// Micro-tile: 6 rows x 16 columns (half a panel) = 24 accumulators of 4 lanes; per k, the 16
// B values are 4 vector loads (contiguous in the panel) and each A value is one broadcast load
// (LD1R), feeding 4 FMLA: 24 FMLA per 10 loads, with 24 + 4 + 2 of the 32 vector registers.
// Loop nest: row blocks of MC rows -> K blocks of at most KC -> 16-column tiles -> row tiles, so a
// 16-column K block of B (16 KB at KC = 256) stays in L1 while the row tiles pass over it.
// The first K block starts from the bias (and from the residual when no activation follows);
// later blocks continue from C; the activation and a residual after it run on the last block,
// from a copy of the tile, since the activation needs registers of its own.
#include "cnx_fast.h"
#include "neon_internal.h"
#include "gemm_tile.h"

#if CNX_ARM64

#define NMR 6     // rows per tile
#define NTN 16    // columns per tile
#ifndef NEON_GEMM_KC
#define NEON_GEMM_KC 256
#endif
#ifndef NEON_GEMM_MC
#define NEON_GEMM_MC 96
#endif

typedef cnx_tile_ep neon_ep;  // valid_n: 16 or more means all of a 16-column tile

CNX_INLINE void gemm_tile(const int MR, int64_t kc, const float *a, int64_t lda, const float *bp,
                          float *c, int64_t ldc, const neon_ep *e) {
    float32x4_t acc[NMR][4];
    const int64_t vn = e->valid_n;
    if (e->first) {
        float32x4_t b[4];
        CNX_UNROLL
        for (int q = 0; q < 4; q++) b[q] = e->bias ? neon_load_partial(e->bias + 4 * q, vn - 4 * q) : vdupq_n_f32(0.0f);
        const float *res = e->act ? NULL : e->residual;
        CNX_UNROLL
        for (int r = 0; r < MR; r++)
            CNX_UNROLL
            for (int q = 0; q < 4; q++)
                acc[r][q] = res ? vaddq_f32(b[q], neon_load_partial(res + r * e->ldr + 4 * q, vn - 4 * q)) : b[q];
    } else {
        CNX_UNROLL
        for (int r = 0; r < MR; r++)
            CNX_UNROLL
            for (int q = 0; q < 4; q++) acc[r][q] = neon_load_partial(c + r * ldc + 4 * q, vn - 4 * q);
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *bk = bp + kk * CNX_GEMM_PANEL;
        const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
        CNX_UNROLL
        for (int r = 0; r < MR; r++) {
            const float32x4_t av = vld1q_dup_f32(a + r * lda + kk);
            acc[r][0] = vfmaq_f32(acc[r][0], b0, av);
            acc[r][1] = vfmaq_f32(acc[r][1], b1, av);
            acc[r][2] = vfmaq_f32(acc[r][2], b2, av);
            acc[r][3] = vfmaq_f32(acc[r][3], b3, av);
        }
    }
    if (e->last && e->act) {
        // Not C itself: the residual may be C.
        float tile[NMR][NTN];
        CNX_UNROLL
        for (int r = 0; r < MR; r++)
            CNX_UNROLL
            for (int q = 0; q < 4; q++) vst1q_f32(tile[r] + 4 * q, acc[r][q]);
        for (int r = 0; r < MR; r++) {
            for (int q = 0; q < 4; q++) {
                float32x4_t v = neon_act(vld1q_f32(tile[r] + 4 * q), e->act);
                if (e->residual) v = vaddq_f32(v, neon_load_partial(e->residual + r * e->ldr + 4 * q, vn - 4 * q));
                neon_store_partial(c + r * ldc + 4 * q, v, vn - 4 * q);
            }
        }
        return;
    }
    CNX_UNROLL
    for (int r = 0; r < MR; r++)
        CNX_UNROLL
        for (int q = 0; q < 4; q++) neon_store_partial(c + r * ldc + 4 * q, acc[r][q], vn - 4 * q);
}

typedef void (*gemm_tile_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                             int64_t ldc, const neon_ep *e);
#define GEMM_TILE(R)                                                                              \
    static void gemm_tile_##R(int64_t kc, const float *a, int64_t lda, const float *bp, float *c, \
                              int64_t ldc, const neon_ep *e) {                                     \
        gemm_tile(R, kc, a, lda, bp, c, ldc, e);                                                   \
    }
GEMM_TILE(1) GEMM_TILE(2) GEMM_TILE(3) GEMM_TILE(4) GEMM_TILE(5) GEMM_TILE(6)
static const gemm_tile_fn GEMM_TILES[NMR + 1] = {0, gemm_tile_1, gemm_tile_2, gemm_tile_3, gemm_tile_4, gemm_tile_5, gemm_tile_6};

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whether the m x n windows of p (stride ldp) and q (stride ldq) share memory.
static int windows_overlap(const float *p, int64_t ldp, const float *q, int64_t ldq, int64_t m, int64_t n) {
    return p < q + (m - 1) * ldq + n && q < p + (m - 1) * ldp + n;
}

void cnx_gemm_f32_neon(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *packed_b, const float *bias, int act, const float *residual,
                       int64_t ldr, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    // Partial sums of a K block live in C: a residual that is C and sits behind the activation
    // would be overwritten before it is added, so then K runs in one block.
    int64_t kcb = k;
    if (k > NEON_GEMM_KC && !(act && residual && windows_overlap(residual, ldr, c, ldc, m, n)))
        kcb = ceil_div(k, ceil_div(k, NEON_GEMM_KC));
    for (int64_t i0 = 0; i0 < m; i0 += NEON_GEMM_MC) {
        const int64_t rows = m - i0 < NEON_GEMM_MC ? m - i0 : NEON_GEMM_MC;
        // Tiles of nearly equal height: a short tile hides less FMA latency.
        const int64_t ntiles = ceil_div(rows, NMR), base = rows / ntiles, taller = rows % ntiles;
        int64_t k0 = 0;
        do {
            const int64_t kc = k - k0 < kcb ? k - k0 : kcb;
            neon_ep e = {0};
            e.ldr = ldr;
            e.act = act;
            e.first = k0 == 0;
            e.last = k0 + kc >= k;
            for (int64_t j0 = 0; j0 < n; j0 += NTN) {
                const float *bp = packed_b + (j0 / CNX_GEMM_PANEL) * CNX_GEMM_PANEL * k + k0 * CNX_GEMM_PANEL + j0 % CNX_GEMM_PANEL;
                e.bias = bias ? bias + j0 : NULL;
                e.valid_n = n - j0;
                int64_t i = i0;
                for (int64_t t = 0; t < ntiles; t++) {
                    const int64_t mr = base + (t < taller);
                    e.residual = residual ? residual + i * ldr + j0 : NULL;
                    GEMM_TILES[mr](kc, a + i * lda + k0, lda, bp, c + i * ldc + j0, ldc, &e);
                    i += mr;
                }
            }
            k0 += kc;
        } while (k0 < k);
    }
}

// The elementwise loop with the activation a constant, so each instance is straight-line code.
CNX_INLINE void act_loop(const int ACT, float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        vst1q_f32(x + i, neon_act(v0, ACT));
        vst1q_f32(x + i + 4, neon_act(v1, ACT));
    }
    for (; i < count; i += 4) neon_store_partial(x + i, neon_act(neon_load_partial(x + i, count - i), ACT), count - i);
}

static __attribute__((noinline)) void act_gelu(float *x, int64_t count) { act_loop(NEON_ACT_GELU, x, count); }
static __attribute__((noinline)) void act_gelu_tanh(float *x, int64_t count) { act_loop(NEON_ACT_GELU_TANH, x, count); }
static __attribute__((noinline)) void act_silu(float *x, int64_t count) { act_loop(NEON_ACT_SILU, x, count); }
static __attribute__((noinline)) void act_gelu_quadratic(float *x, int64_t count) { act_loop(NEON_ACT_GELU_QUADRATIC, x, count); }

void cnx_activation_inplace_f32_neon(float *x, int64_t count, int act) {
    switch (act) {
    case NEON_ACT_GELU: act_gelu(x, count); return;
    case NEON_ACT_GELU_TANH: act_gelu_tanh(x, count); return;
    case NEON_ACT_SILU: act_silu(x, count); return;
    case NEON_ACT_GELU_QUADRATIC: act_gelu_quadratic(x, count); return;
    default: return;
    }
}

#endif  // CNX_ARM64
