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

#if CNX_ARM64

// The coefficients of fast_gemm.c's GELU_Q16 (AVX-512), value for value: with the same operations
// (neon_internal.h) the NEON GELU gives the same bits as the AVX-512 one.
const float cnx_neon_gelu_q16[6][16] __attribute__((aligned(64))) = {
    {5.000000000e-01f, 3.538302183e-01f, 2.266273499e-01f, 1.302945167e-01f, 6.680720299e-02f, 3.039636277e-02f, 1.222447399e-02f, 4.332448356e-03f, 1.349897822e-03f, 3.690782178e-04f, 8.841715317e-05f, 1.853668255e-05f, 3.397655519e-06f, 5.440377322e-07f, 7.604862873e-08f, 9.275223256e-09f},
    {-1.496032178e-01f, -1.394453049e-01f, -1.129262745e-01f, -7.945371419e-02f, -4.856922477e-02f, -2.579498850e-02f, -1.190243661e-02f, -4.771574400e-03f, -1.661924995e-03f, -5.029021995e-04f, -1.322136814e-04f, -3.019868927e-05f, -5.992620117e-06f, -1.033143008e-06f, -1.547451660e-07f, -2.013653955e-08f},
    {-1.532748001e-06f, 9.800854139e-03f, 1.587727666e-02f, 1.675936393e-02f, 1.366145071e-02f, 9.070049971e-03f, 5.022100639e-03f, 2.348589944e-03f, 9.346365114e-04f, 3.180517815e-04f, 9.285534907e-05f, 2.331265387e-05f, 5.042028988e-06f, 9.406303434e-07f, 1.515221584e-07f, 2.109251263e-08f},
    {3.512408817e-03f, 2.824777737e-03f, 1.170671312e-03f, -4.926054971e-04f, -1.428605174e-03f, -1.527421991e-03f, -1.136722742e-03f, -6.591936108e-04f, -3.107583907e-04f, -1.216118762e-04f, -3.998498141e-05f, -1.113012513e-05f, -2.636549880e-06f, -5.334721322e-07f, -9.245285071e-08f, -1.375229619e-08f},
    {-1.037514085e-05f, -3.584710066e-04f, -4.783212207e-04f, -3.455025435e-04f, -1.097052082e-04f, 6.745206338e-05f, 1.282774465e-04f, 1.081026494e-04f, 6.414602103e-05f, 2.961081918e-05f, 1.106737727e-05f, 3.419213954e-06f, 8.839676866e-07f, 1.927785718e-07f, 3.566278295e-08f, 5.619149146e-09f},
    {-6.705107080e-05f, -2.472889901e-05f, 2.381076592e-05f, 4.513870590e-05f, 3.524294880e-05f, 1.301865359e-05f, -3.243603487e-06f, -8.474898095e-06f, -6.918731287e-06f, -3.809636610e-06f, -1.604603199e-06f, -5.421140372e-07f, -1.504562874e-07f, -3.478617217e-08f, -6.761061488e-09f, -1.111626791e-09f},
};

#define NMR 6     // rows per tile
#define NTN 16    // columns per tile
#ifndef NEON_GEMM_KC
#define NEON_GEMM_KC 256
#endif
#ifndef NEON_GEMM_MC
#define NEON_GEMM_MC 96
#endif

typedef struct {
    const float *bias;      // at the tile's first column, or NULL
    const float *residual;  // at the tile's first row and column, or NULL
    int64_t ldr;
    int act;
    int first, last;        // first / last K block
    int64_t valid_n;        // columns of the tile inside C (16 or more: all)
} neon_ep;

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

void cnx_activation_inplace_f32_neon(float *x, int64_t count, int act) {
    switch (act) {
    case NEON_ACT_GELU: act_gelu(x, count); return;
    case NEON_ACT_GELU_TANH: act_gelu_tanh(x, count); return;
    case NEON_ACT_SILU: act_silu(x, count); return;
    default: return;
    }
}

#endif  // CNX_ARM64
