// Depthwise k x k convolution, stride 1, zero padding (k - 1) / 2, over one NHWC image.
//
// SIMD scheme: channels in vectors (16 or 8 lanes, the last one masked); R output pixels of one
// row in registers at a time. For each kernel row, the k weight vectors are loaded once and each
// of the R + k - 1 input pixels of the window is loaded once and multiplied into every
// accumulator it reaches, so the inner loop is FMA-bound rather than load-bound. The image border
// clamps the kernel rows and skips input pixels outside the row: no padded copy. k = 3, 5, 7
// are compiled with k and R constant; other k take a per-pixel loop.
// R: AVX-512 takes 14 pixels (k = 7: 7 weights + 14 accumulators + 1 input of 32 zmm; enough
// independent FMA chains), then 7 for the rest of the row, so ConvNeXt's widths 56, 28, 14, 7
// waste nothing; AVX2 takes 7 (7 + 7 + 1 = 15 of 16 ymm).
#include "cnx_fast.h"

#include <stdlib.h>
#include "neon_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#include <immintrin.h>
#endif

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

void cnx_dwconv_nhwc_rows_f32_ref(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                                  const float *weight, const float *bias, float *y, int64_t y0,
                                  int64_t y1) {
    const int64_t pad = (k - 1) / 2;
    y0 = max64(y0, 0);
    y1 = min64(y1, h);
    for (int64_t oy = y0; oy < y1; oy++) {
        for (int64_t ox = 0; ox < w; ox++) {
            for (int64_t ch = 0; ch < c; ch++) {
                float s = bias ? bias[ch] : 0.0f;
                for (int64_t ky = 0; ky < k; ky++) {
                    const int64_t iy = oy + ky - pad;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t kx = 0; kx < k; kx++) {
                        const int64_t ix = ox + kx - pad;
                        if (ix < 0 || ix >= w) continue;
                        s += x[(iy * w + ix) * c + ch] * weight[(ky * k + kx) * c + ch];
                    }
                }
                y[(oy * w + ox) * c + ch] = s;
            }
        }
    }
}

#if CNX_X86

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// MARK: - AVX-512

// R outputs (oy, x0 .. x0 + R - 1) of one 16-channel block. x, wt, yrow already point at the
// block's first channel; `valid` outputs are stored. CHECK: test input columns against the row.
// Strides (floats): sx between input pixels (rows of x are w * sx apart, and x holds rows from
// r0 on: row iy is at x + (iy - r0) w sx), sw between weight taps, sy between output pixels.
INLINE T512 void dw_block512(const int K, const int R, const int CHECK, const float *x,
                             int64_t r0, int64_t h, int64_t w, int64_t sx, const float *wt,
                             int64_t sw, __m512 bias, float *yrow, int64_t sy, int64_t oy,
                             int64_t x0, int64_t valid, __mmask16 mk) {
    const int pad = K / 2;
    __m512 acc[14];
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) acc[j] = bias;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xrow = x + (oy + ky - pad - r0) * w * sx;
        __m512 wv[7];
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) wv[kx] = _mm512_maskz_loadu_ps(mk, wt + (ky * K + kx) * sw);
#pragma clang loop unroll(full)
        for (int t = 0; t < R + K - 1; t++) {
            const int64_t ix = x0 - pad + t;
            if (CHECK && (ix < 0 || ix >= w)) continue;
            const __m512 v = _mm512_maskz_loadu_ps(mk, xrow + ix * sx);
#pragma clang loop unroll(full)
            for (int j = 0; j < R; j++) {
                const int kx = t - j;
                if (kx >= 0 && kx < K) acc[j] = _mm512_fmadd_ps(v, wv[kx], acc[j]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++)
        if (j < valid) _mm512_mask_storeu_ps(yrow + (x0 + j) * sy, mk, acc[j]);
}

// One output row of one channel block: blocks of 14 pixels (one, partly used, for widths 8..13),
// then of 7; interior blocks skip the column test.
INLINE T512 void dw_row512(const int K, const float *x, int64_t r0, int64_t h, int64_t w,
                           int64_t sx, const float *wt, int64_t sw, __m512 bias, float *yrow,
                           int64_t sy, int64_t oy, __mmask16 mk) {
    const int pad = K / 2;
    int64_t x0 = 0;
    for (; x0 + 14 <= w || (x0 == 0 && w > 7); x0 += 14) {
        const int64_t valid = min64(14, w - x0);
        if (x0 >= pad && x0 + 14 - 1 + pad < w)
            dw_block512(K, 14, 0, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
        else
            dw_block512(K, 14, 1, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
    }
    for (; x0 < w; x0 += 7) {
        const int64_t valid = min64(7, w - x0);
        if (x0 >= pad && x0 + 7 - 1 + pad < w)
            dw_block512(K, 7, 0, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
        else
            dw_block512(K, 7, 1, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
    }
}

#define DEF_ROW512(K)                                                                           \
    static T512 void dw_row512_k##K(const float *x, int64_t r0, int64_t h, int64_t w,          \
                                    int64_t sx, const float *wt, int64_t sw, __m512 bias,      \
                                    float *yrow, int64_t sy, int64_t oy, __mmask16 mk) {       \
        dw_row512(K, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);                          \
    }
DEF_ROW512(3) DEF_ROW512(5) DEF_ROW512(7)

// Any k: one output pixel at a time, the kernel window clamped to the image.
static T512 void dw_row512_any(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                               const float *wt, __m512 bias, float *yrow, int64_t oy, __mmask16 mk) {
    const int64_t pad = (k - 1) / 2;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(k, h - oy + pad);
    for (int64_t ox = 0; ox < w; ox++) {
        const int64_t kx0 = max64(0, pad - ox), kx1 = min64(k, w - ox + pad);
        __m512 acc = bias;
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const float *xrow = x + ((oy + ky - pad) * w + ox - pad) * c;
            for (int64_t kx = kx0; kx < kx1; kx++)
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, xrow + kx * c),
                                      _mm512_maskz_loadu_ps(mk, wt + (ky * k + kx) * c), acc);
        }
        _mm512_mask_storeu_ps(yrow + ox * c, mk, acc);
    }
}

// Output rows per packed group (below).
#define DW_GROUP 8

static T512 void dw_rows512(int64_t k, const float *x, int64_t r0, int64_t h, int64_t w,
                            int64_t sx, const float *wt, int64_t sw, __m512 bias, float *yrow,
                            int64_t sy, int64_t oy, __mmask16 mk) {
    if (k == 3) dw_row512_k3(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);
    else if (k == 5) dw_row512_k5(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);
    else dw_row512_k7(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);
}

// k = 3, 5, 7: groups of up to DW_GROUP output rows. The input rows a group reads are first
// copied, in pixel order (each pixel's channels read in one sequential pass), into a blocked
// layout: 16-channel block by block, each block's rows with its 16 floats a pixel; a block's
// k x k weights likewise (16 floats a tap). In place a block's pixels and taps are c floats
// apart, and with c a multiple of 512 (ConvNeXt-B's 512 and 1024 channels: 2 or 4 KB) every one
// of them falls in the same one or two L1 sets, so each evicts the last: those stages ran at a
// third of the others' speed. The arithmetic and its order are unchanged. Without memory for the
// copy, the rows run in place.
static T512 void dwconv_avx512(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                               const float *weight, const float *bias, float *y, int64_t y0,
                               int64_t y1) {
    const int64_t pad = (k - 1) / 2, blocks = (c + 15) / 16;
    const int fixed = k == 3 || k == 5 || k == 7;
    const int64_t rows_max = min64(h, DW_GROUP + k - 1);
    // A multiple of 16 floats (aligned_alloc wants a multiple of the alignment).
    float *pack = fixed ? aligned_alloc(64, (size_t)(rows_max * w * blocks * 16 + k * k * 16) * sizeof(float)) : NULL;
    for (int64_t g0 = y0; g0 < y1; g0 += DW_GROUP) {
        const int64_t g1 = min64(y1, g0 + DW_GROUP);
        const int64_t r0 = max64(0, g0 - pad), r1 = min64(h, g1 + pad), plane = (r1 - r0) * w * 16;
        float *wl = pack, *xl = pack ? pack + k * k * 16 : NULL;
        if (pack) {
            for (int64_t p = 0; p < (r1 - r0) * w; p++) {
                const float *src = x + (r0 * w + p) * c;
                for (int64_t b = 0; b < blocks; b++) {
                    const int64_t left = c - b * 16;
                    const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                    _mm512_store_ps(xl + b * plane + p * 16, _mm512_maskz_loadu_ps(mk, src + b * 16));
                }
            }
        }
        for (int64_t cb = 0; cb < c; cb += 16) {
            const int64_t left = c - cb;
            const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + cb) : _mm512_setzero_ps();
            const float *xb = x + cb, *wb = weight + cb;
            if (!fixed) {
                for (int64_t oy = g0; oy < g1; oy++) dw_row512_any(xb, h, w, c, k, wb, bv, y + oy * w * c + cb, oy, mk);
                continue;
            }
            if (!pack) {
                for (int64_t oy = g0; oy < g1; oy++) dw_rows512(k, xb, 0, h, w, c, wb, c, bv, y + oy * w * c + cb, c, oy, mk);
                continue;
            }
            for (int64_t t = 0; t < k * k; t++) _mm512_store_ps(wl + t * 16, _mm512_maskz_loadu_ps(mk, wb + t * c));
            const float *xc = xl + (cb / 16) * plane;
            for (int64_t oy = g0; oy < g1; oy++) dw_rows512(k, xc, r0, h, w, 16, wl, 16, bv, y + oy * w * c + cb, c, oy, mk);
        }
    }
    free(pack);
}

// MARK: - AVX2

// As dw_block512 with 8 lanes; MASKED loads and stores the block through the lane mask mk.
INLINE T256 void dw_block256(const int K, const int R, const int CHECK, const int MASKED,
                             const float *x, int64_t r0, int64_t h, int64_t w, int64_t sx,
                             const float *wt, int64_t sw, __m256 bias, float *yrow, int64_t sy,
                             int64_t oy, int64_t x0, int64_t valid, __m256i mk) {
    const int pad = K / 2;
#define LD(p) (MASKED ? _mm256_maskload_ps((p), mk) : _mm256_loadu_ps(p))
    __m256 acc[7];
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) acc[j] = bias;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xrow = x + (oy + ky - pad - r0) * w * sx;
        __m256 wv[7];
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) wv[kx] = LD(wt + (ky * K + kx) * sw);
#pragma clang loop unroll(full)
        for (int t = 0; t < R + K - 1; t++) {
            const int64_t ix = x0 - pad + t;
            if (CHECK && (ix < 0 || ix >= w)) continue;
            const __m256 v = LD(xrow + ix * sx);
#pragma clang loop unroll(full)
            for (int j = 0; j < R; j++) {
                const int kx = t - j;
                if (kx >= 0 && kx < K) acc[j] = _mm256_fmadd_ps(v, wv[kx], acc[j]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) {
        if (j < valid) {
            if (MASKED) _mm256_maskstore_ps(yrow + (x0 + j) * sy, mk, acc[j]);
            else _mm256_storeu_ps(yrow + (x0 + j) * sy, acc[j]);
        }
    }
#undef LD
}

INLINE T256 void dw_row256(const int K, const int MASKED, const float *x, int64_t r0, int64_t h,
                           int64_t w, int64_t sx, const float *wt, int64_t sw, __m256 bias,
                           float *yrow, int64_t sy, int64_t oy, __m256i mk) {
    const int pad = K / 2;
    for (int64_t x0 = 0; x0 < w; x0 += 7) {
        const int64_t valid = min64(7, w - x0);
        if (x0 >= pad && x0 + 7 - 1 + pad < w)
            dw_block256(K, 7, 0, MASKED, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
        else
            dw_block256(K, 7, 1, MASKED, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, x0, valid, mk);
    }
}

#define DEF_ROW256(K)                                                                           \
    static T256 void dw_row256_k##K(const float *x, int64_t r0, int64_t h, int64_t w,          \
                                    int64_t sx, const float *wt, int64_t sw, __m256 bias,      \
                                    float *yrow, int64_t sy, int64_t oy, __m256i mk,           \
                                    int masked) {                                               \
        if (masked) dw_row256(K, 1, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);           \
        else dw_row256(K, 0, x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk);                  \
    }
DEF_ROW256(3) DEF_ROW256(5) DEF_ROW256(7)

static T256 void dw_row256_any(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                               const float *wt, __m256 bias, float *yrow, int64_t oy, __m256i mk) {
    const int64_t pad = (k - 1) / 2;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(k, h - oy + pad);
    for (int64_t ox = 0; ox < w; ox++) {
        const int64_t kx0 = max64(0, pad - ox), kx1 = min64(k, w - ox + pad);
        __m256 acc = bias;
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const float *xrow = x + ((oy + ky - pad) * w + ox - pad) * c;
            for (int64_t kx = kx0; kx < kx1; kx++)
                acc = _mm256_fmadd_ps(_mm256_maskload_ps(xrow + kx * c, mk),
                                      _mm256_maskload_ps(wt + (ky * k + kx) * c, mk), acc);
        }
        _mm256_maskstore_ps(yrow + ox * c, mk, acc);
    }
}

static T256 void dw_rows256(int64_t k, const float *x, int64_t r0, int64_t h, int64_t w,
                            int64_t sx, const float *wt, int64_t sw, __m256 bias, float *yrow,
                            int64_t sy, int64_t oy, __m256i mk, int masked) {
    if (k == 3) dw_row256_k3(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk, masked);
    else if (k == 5) dw_row256_k5(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk, masked);
    else dw_row256_k7(x, r0, h, w, sx, wt, sw, bias, yrow, sy, oy, mk, masked);
}

// As dwconv_avx512: groups of output rows, the rows and taps they read copied into an
// 8-channel-blocked layout first (8 floats a pixel, 8 a tap).
static T256 void dwconv_avx2(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                             const float *weight, const float *bias, float *y, int64_t y0,
                             int64_t y1) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int64_t pad = (k - 1) / 2, blocks = (c + 7) / 8;
    const int fixed = k == 3 || k == 5 || k == 7;
    const int64_t rows_max = min64(h, DW_GROUP + k - 1);
    // aligned_alloc wants a size that is a multiple of the alignment (C11): floats rounded up to 16.
    const size_t floats = (size_t)(rows_max * w * blocks * 8 + k * k * 8 + 15) / 16 * 16;
    float *pack = fixed ? aligned_alloc(64, floats * sizeof(float)) : NULL;
    for (int64_t g0 = y0; g0 < y1; g0 += DW_GROUP) {
        const int64_t g1 = min64(y1, g0 + DW_GROUP);
        const int64_t r0 = max64(0, g0 - pad), r1 = min64(h, g1 + pad), plane = (r1 - r0) * w * 8;
        float *wl = pack, *xl = pack ? pack + k * k * 8 : NULL;
        if (pack) {
            for (int64_t p = 0; p < (r1 - r0) * w; p++) {
                const float *src = x + (r0 * w + p) * c;
                for (int64_t b = 0; b < blocks; b++) {
                    const int64_t left = c - b * 8;
                    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 8 ? (int)left : 8), lanes);
                    _mm256_store_ps(xl + b * plane + p * 8, _mm256_maskload_ps(src + b * 8, mk));
                }
            }
        }
        for (int64_t cb = 0; cb < c; cb += 8) {
            const int64_t left = c - cb;
            const int masked = left < 8;
            const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(masked ? (int)left : 8), lanes);
            const __m256 bv = bias ? _mm256_maskload_ps(bias + cb, mk) : _mm256_setzero_ps();
            const float *xb = x + cb, *wb = weight + cb;
            if (!fixed) {
                for (int64_t oy = g0; oy < g1; oy++) dw_row256_any(xb, h, w, c, k, wb, bv, y + oy * w * c + cb, oy, mk);
                continue;
            }
            if (!pack) {
                for (int64_t oy = g0; oy < g1; oy++)
                    dw_rows256(k, xb, 0, h, w, c, wb, c, bv, y + oy * w * c + cb, c, oy, mk, masked);
                continue;
            }
            for (int64_t t = 0; t < k * k; t++) _mm256_store_ps(wl + t * 8, _mm256_maskload_ps(wb + t * c, mk));
            const float *xc = xl + (cb / 8) * plane;
            for (int64_t oy = g0; oy < g1; oy++)
                dw_rows256(k, xc, r0, h, w, 8, wl, 8, bv, y + oy * w * c + cb, c, oy, mk, masked);
        }
    }
    free(pack);
}

#endif  // CNX_X86

void cnx_dwconv_nhwc_rows_f32(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                              const float *weight, const float *bias, float *y, int64_t y0,
                              int64_t y1) {
    y0 = max64(y0, 0);
    y1 = min64(y1, h);
    if (y0 >= y1 || w <= 0 || c <= 0 || k <= 0) return;
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: dwconv_avx512(x, h, w, c, k, weight, bias, y, y0, y1); return;
    case CNX_ISA_AVX2: dwconv_avx2(x, h, w, c, k, weight, bias, y, y0, y1); return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_dwconv_nhwc_rows_f32_neon(x, h, w, c, k, weight, bias, y, y0, y1); return;
#endif
    default: cnx_dwconv_nhwc_rows_f32_ref(x, h, w, c, k, weight, bias, y, y0, y1); return;
    }
}
