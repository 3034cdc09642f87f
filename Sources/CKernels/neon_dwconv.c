// arm64 (NEON) depthwise k x k convolution, stride 1, zero padding (k - 1) / 2, over NHWC rows
// (cnx_dwconv_nhwc_rows_f32 semantics).
//
// Scheme: 8 channels (two vectors) by 7 output pixels of one row in registers. For each kernel
// row, its k x 2 weight vectors are loaded once and each of the 7 + k - 1 input pixels of the
// window once, multiplied into every accumulator it reaches: k = 7 holds 14 weights + 14
// accumulators + 2 inputs of the 32 vector registers, and the inner loop is FMA-bound (49 FMLA x 2
// per kernel row, 13 x 2 input loads). Blocks of 7 pixels fit ConvNeXt's widths 56, 28, 14, 7.
// The image border clamps the kernel rows and skips input pixels outside the row (no padded
// copy). Channels left over from the blocks of 8 take one vector, the last 1..3 a partial vector.
// k = 3, 5, 7 are compiled with k constant; other odd k (none in ConvNeXt) take the scalar twin.
#include "cnx_fast.h"
#include "neon_internal.h"

#if CNX_ARM64

#define DW_R 7  // output pixels per block

static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// A channel vector at p: whole (lanes >= 4) or the first `lanes` channels.
CNX_INLINE float32x4_t ld_ch(const int PART, const float *p, int64_t lanes) {
    return PART ? neon_load_partial(p, lanes) : vld1q_f32(p);
}

// Outputs (oy, x0 .. x0 + R - 1) of CV channel vectors; x, wt, yrow point at the block's first
// channel. CHECK: test the input columns against the row; `valid` outputs are stored.
CNX_INLINE void dw_block(const int K, const int CV, const int PART, const int CHECK, const float *x,
                         int64_t h, int64_t w, int64_t c, const float *wt, const float32x4_t *bias,
                         float *yrow, int64_t oy, int64_t x0, int64_t valid, int64_t lanes) {
    const int pad = K / 2;
    float32x4_t acc[DW_R][2];
    CNX_UNROLL
    for (int j = 0; j < DW_R; j++)
        CNX_UNROLL
        for (int q = 0; q < CV; q++) acc[j][q] = bias[q];
    const int64_t ky0 = imax(0, pad - oy), ky1 = imin(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xrow = x + (oy + ky - pad) * w * c;
        float32x4_t wv[7][2];
        CNX_UNROLL
        for (int kx = 0; kx < K; kx++)
            CNX_UNROLL
            for (int q = 0; q < CV; q++) wv[kx][q] = ld_ch(PART, wt + (ky * K + kx) * c + 4 * q, lanes);
        CNX_UNROLL
        for (int t = 0; t < DW_R + K - 1; t++) {
            const int64_t ix = x0 - pad + t;
            if (CHECK && (ix < 0 || ix >= w)) continue;
            float32x4_t v[2];
            CNX_UNROLL
            for (int q = 0; q < CV; q++) v[q] = ld_ch(PART, xrow + ix * c + 4 * q, lanes);
            CNX_UNROLL
            for (int j = 0; j < DW_R; j++) {
                const int kx = t - j;
                if (kx < 0 || kx >= K) continue;
                CNX_UNROLL
                for (int q = 0; q < CV; q++) acc[j][q] = vfmaq_f32(acc[j][q], v[q], wv[kx][q]);
            }
        }
    }
    CNX_UNROLL
    for (int j = 0; j < DW_R; j++) {
        if (j >= valid) break;
        CNX_UNROLL
        for (int q = 0; q < CV; q++) {
            float *out = yrow + (x0 + j) * c + 4 * q;
            if (PART) neon_store_partial(out, acc[j][q], lanes);
            else vst1q_f32(out, acc[j][q]);
        }
    }
}

// One output row of one channel block, in blocks of 7 pixels; interior blocks skip the test.
CNX_INLINE void dw_row(const int K, const int CV, const int PART, const float *x, int64_t h,
                       int64_t w, int64_t c, const float *wt, const float32x4_t *bias, float *yrow,
                       int64_t oy, int64_t lanes) {
    const int pad = K / 2;
    for (int64_t x0 = 0; x0 < w; x0 += DW_R) {
        const int64_t valid = imin(DW_R, w - x0);
        if (x0 >= pad && x0 + DW_R - 1 + pad < w)
            dw_block(K, CV, PART, 0, x, h, w, c, wt, bias, yrow, oy, x0, valid, lanes);
        else
            dw_block(K, CV, PART, 1, x, h, w, c, wt, bias, yrow, oy, x0, valid, lanes);
    }
}

typedef void (*dw_row_fn)(const float *x, int64_t h, int64_t w, int64_t c, const float *wt,
                          const float32x4_t *bias, float *yrow, int64_t oy, int64_t lanes);
#define DW_ROW(K, CV, PART)                                                                     \
    static void dw_row_##K##_##CV##_##PART(const float *x, int64_t h, int64_t w, int64_t c,     \
                                           const float *wt, const float32x4_t *bias,             \
                                           float *yrow, int64_t oy, int64_t lanes) {             \
        dw_row(K, CV, PART, x, h, w, c, wt, bias, yrow, oy, lanes);                              \
    }
DW_ROW(3, 2, 0) DW_ROW(3, 1, 0) DW_ROW(3, 1, 1)
DW_ROW(5, 2, 0) DW_ROW(5, 1, 0) DW_ROW(5, 1, 1)
DW_ROW(7, 2, 0) DW_ROW(7, 1, 0) DW_ROW(7, 1, 1)
// [k / 2 - 1][0: 8 channels, 1: 4 channels, 2: 1..3 channels]
static const dw_row_fn DW_ROWS[3][3] = {
    {dw_row_3_2_0, dw_row_3_1_0, dw_row_3_1_1},
    {dw_row_5_2_0, dw_row_5_1_0, dw_row_5_1_1},
    {dw_row_7_2_0, dw_row_7_1_0, dw_row_7_1_1},
};

void cnx_dwconv_nhwc_rows_f32_neon(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                                   const float *weight, const float *bias, float *y, int64_t y0,
                                   int64_t y1) {
    if (k != 3 && k != 5 && k != 7) {
        cnx_dwconv_nhwc_rows_f32_ref(x, h, w, c, k, weight, bias, y, y0, y1);
        return;
    }
    for (int64_t oy = y0; oy < y1; oy++) {
        for (int64_t cb = 0; cb < c;) {
            const int64_t left = c - cb;
            const int kind = left >= 8 ? 0 : left >= 4 ? 1 : 2;
            const int64_t step = kind == 0 ? 8 : kind == 1 ? 4 : left;
            float32x4_t bv[2];
            for (int q = 0; q < 2; q++)
                bv[q] = bias && 4 * q < step ? neon_load_partial(bias + cb + 4 * q, step - 4 * q) : vdupq_n_f32(0.0f);
            const float *xb = x + cb, *wb = weight + cb;
            float *yrow = y + oy * w * c + cb;
            DW_ROWS[k / 2 - 1][kind](xb, h, w, c, wb, bv, yrow, oy, step);
            cb += step;
        }
    }
}

#endif  // CNX_ARM64
