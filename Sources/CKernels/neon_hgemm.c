// The arm64 half-precision GEMM (cnx_half.h, path CNX_HPATH_NEON_BF16): bfloat16 weights by BFDOT
// (FEAT_BF16) on activations rounded to bfloat16, float16 weights widened in the kernel by FCVTL
// (base Armv8) for float FMLA in k order. Both read the packed forms of fast_hgemm.c as they are.
//
// Tile: 4 rows x 16 columns, 16 accumulators of 4 floats. bf16: per pair of k, 4 vector loads of
// B (a 32-bit lane of the packed pair row is one column's (k, k+1) pair, BFDOT's operand), one
// LD1R of each row's activation pair (converted once per row block, round to nearest even,
// denormals flushed as the x86 dot path), 16 BFDOT. float16: per k, 2 loads of 8 halves, 4 FCVTL,
// one LD1R per row, 16 FMLA.
//
// BFDOT rounds differently from the twin cnx_gemm_bf16_dot_ref (Arm ARM, BFDotAdd without
// FEAT_EBF16: the pair's products are summed, then added to the accumulator, each addition
// rounded to odd with denormals flushed, FPCR ignored; the twin rounds each of its two additions
// to nearest even, odd product first). So the bf16 path matches its twin within a rounding bound,
// not bit for bit (Tests/arm64/kernels_test.c states the bound); the float16 path computes what
// cnx_gemm_f16_ref does, bit for bit without an activation.
#include "cnx_half.h"
#include "hgemm_internal.h"
#include "neon_internal.h"

#if CNX_ARM64

#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#define CNX_TARGET_BF16 __attribute__((target("bf16")))
#else
#define CNX_TARGET_BF16 __attribute__((target("arch=armv8.2-a+bf16")))
#endif

#define TR 4   // rows per tile
#define TC 16  // columns per tile (half a packed panel)

// The accumulators' start (bias, plus the residual when no activation sits between), as the twins.
static void tile_start(float *t, int rows, int w, int64_t i0, int64_t j0, const float *bias, int act,
                       const float *residual, int64_t ldr) {
    for (int r = 0; r < TR; r++)
        for (int j = 0; j < TC; j++) {
            float s = 0.0f;
            if (r < rows && j < w) {
                s = bias ? bias[j0 + j] : 0.0f;
                if (residual && !act) s = s + residual[(i0 + r) * ldr + j0 + j];
            }
            t[r * TC + j] = s;
        }
}

// The epilogue on a finished tile: activation (the float kernels' NEON one), then the residual.
// Each output reads its own residual element before writing it, so residual may be C itself.
static void tile_finish(float *t, int rows, int w, int64_t i0, int64_t j0, int act, const float *residual,
                        int64_t ldr, float *c, int64_t ldc) {
    if (act) cnx_activation_inplace_f32_neon(t, (int64_t)TR * TC, act);
    for (int r = 0; r < rows; r++) {
        float *cr = c + (i0 + r) * ldc + j0;
        const float *tr = t + r * TC;
        if (residual && act) {
            const float *rr = residual + (i0 + r) * ldr + j0;
            for (int j = 0; j < w; j++) cr[j] = tr[j] + rr[j];
        } else {
            memcpy(cr, tr, (size_t)w * sizeof(float));
        }
    }
}

// float -> bfloat16 bits as the x86 dot path: denormal inputs flushed, round to nearest even.
static inline uint16_t bf16_daz(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7F800000u) == 0) u &= 0x80000000u;
    memcpy(&x, &u, 4);
    return cnx_bf16_from_f32(x);
}

CNX_TARGET_BF16 static void bf16_tile(int64_t kq, const uint32_t *apairs, int64_t lda2, const uint16_t *bp,
                                      float *t) {
    float32x4_t acc[TR][4];
    for (int r = 0; r < TR; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = vld1q_f32(t + r * TC + 4 * c);
    for (int64_t q = 0; q < kq; q++) {
        const uint16_t *b = bp + q * 2 * CNX_HPANEL;
        bfloat16x8_t bv[4];
        CNX_UNROLL for (int c = 0; c < 4; c++) bv[c] = vreinterpretq_bf16_u16(vld1q_u16(b + 8 * c));
        CNX_UNROLL for (int r = 0; r < TR; r++) {
            const bfloat16x8_t av = vreinterpretq_bf16_u32(vld1q_dup_u32(apairs + r * lda2 + q));
            CNX_UNROLL for (int c = 0; c < 4; c++) acc[r][c] = vbfdotq_f32(acc[r][c], bv[c], av);
        }
    }
    for (int r = 0; r < TR; r++)
        for (int c = 0; c < 4; c++) vst1q_f32(t + r * TC + 4 * c, acc[r][c]);
}

__attribute__((noinline)) static void f16_tile(int64_t k, const float *a, int64_t lda, int rows, const uint16_t *bp, float *t) {
    float32x4_t acc[TR][4];
    for (int r = 0; r < TR; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = vld1q_f32(t + r * TC + 4 * c);
    const float zero = 0.0f;
    const float *ar[TR];
    for (int r = 0; r < TR; r++) ar[r] = r < rows ? a + r * lda : &zero;
    const int64_t step[TR] = {rows > 0, rows > 1, rows > 2, rows > 3};
    for (int64_t kk = 0; kk < k; kk++) {
        const uint16_t *b = bp + kk * CNX_HPANEL;
        const float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16(b)), h1 = vreinterpretq_f16_u16(vld1q_u16(b + 8));
        const float32x4_t w0 = vcvt_f32_f16(vget_low_f16(h0)), w1 = vcvt_high_f32_f16(h0);
        const float32x4_t w2 = vcvt_f32_f16(vget_low_f16(h1)), w3 = vcvt_high_f32_f16(h1);
        CNX_UNROLL for (int r = 0; r < TR; r++) {
            const float32x4_t av = vld1q_dup_f32(ar[r] + kk * step[r]);
            acc[r][0] = vfmaq_f32(acc[r][0], av, w0);
            acc[r][1] = vfmaq_f32(acc[r][1], av, w1);
            acc[r][2] = vfmaq_f32(acc[r][2], av, w2);
            acc[r][3] = vfmaq_f32(acc[r][3], av, w3);
        }
    }
    for (int r = 0; r < TR; r++)
        for (int c = 0; c < 4; c++) vst1q_f32(t + r * TC + 4 * c, acc[r][c]);
}

void cnx_hgemm_neon(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                    const uint16_t *packed_b, const float *bias, int act, const float *residual, int64_t ldr,
                    float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    const int64_t kp2 = k + (k & 1), kq = kp2 / 2;
    uint32_t *apairs = NULL;
    if (kind == CNX_HK_BF16_DOT && kq > 0) {
        apairs = malloc((size_t)(TR * kq) * sizeof(uint32_t));
        if (!apairs) abort();
    }
    float t[TR * TC];
    for (int64_t i0 = 0; i0 < m; i0 += TR) {
        const int rows = m - i0 < TR ? (int)(m - i0) : TR;
        if (apairs) {
            // The row block's activations as bfloat16 pairs (the odd k's partner is zero);
            // missing rows are zero.
            uint16_t *h = (uint16_t *)apairs;
            for (int r = 0; r < TR; r++)
                for (int64_t kk = 0; kk < kp2; kk++)
                    h[r * kp2 + kk] = r < rows && kk < k ? bf16_daz(a[(i0 + r) * lda + kk]) : 0;
        }
        for (int64_t j0 = 0; j0 < n; j0 += TC) {
            const int w = n - j0 < TC ? (int)(n - j0) : TC;
            const int64_t panel = j0 / CNX_HPANEL, half = (j0 % CNX_HPANEL) / TC;
            tile_start(t, rows, w, i0, j0, bias, act, residual, ldr);
            if (kind == CNX_HK_BF16_DOT) {
                if (kq > 0) bf16_tile(kq, apairs, kq, packed_b + panel * CNX_HPANEL * kp2 + half * 2 * TC, t);
            } else {
                f16_tile(k, a + i0 * lda, lda, rows, packed_b + panel * CNX_HPANEL * kp2 + half * TC, t);
            }
            tile_finish(t, rows, w, i0, j0, act, residual, ldr, c, ldc);
        }
    }
    free(apairs);
}

#endif  // CNX_ARM64
