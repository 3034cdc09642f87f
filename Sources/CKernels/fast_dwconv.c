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
INLINE T512 void dw_block512(const int K, const int R, const int CHECK, const float *x,
                             int64_t h, int64_t w, int64_t c, const float *wt, __m512 bias,
                             float *yrow, int64_t oy, int64_t x0, int64_t valid, __mmask16 mk) {
    const int pad = K / 2;
    __m512 acc[14];
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) acc[j] = bias;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xrow = x + (oy + ky - pad) * w * c;
        __m512 wv[7];
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) wv[kx] = _mm512_maskz_loadu_ps(mk, wt + (ky * K + kx) * c);
#pragma clang loop unroll(full)
        for (int t = 0; t < R + K - 1; t++) {
            const int64_t ix = x0 - pad + t;
            if (CHECK && (ix < 0 || ix >= w)) continue;
            const __m512 v = _mm512_maskz_loadu_ps(mk, xrow + ix * c);
#pragma clang loop unroll(full)
            for (int j = 0; j < R; j++) {
                const int kx = t - j;
                if (kx >= 0 && kx < K) acc[j] = _mm512_fmadd_ps(v, wv[kx], acc[j]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++)
        if (j < valid) _mm512_mask_storeu_ps(yrow + (x0 + j) * c, mk, acc[j]);
}

// One output row of one channel block: blocks of 14 pixels (one, partly used, for widths 8..13),
// then of 7; interior blocks skip the column test.
INLINE T512 void dw_row512(const int K, const float *x, int64_t h, int64_t w, int64_t c,
                           const float *wt, __m512 bias, float *yrow, int64_t oy, __mmask16 mk) {
    const int pad = K / 2;
    int64_t x0 = 0;
    for (; x0 + 14 <= w || (x0 == 0 && w > 7); x0 += 14) {
        const int64_t valid = min64(14, w - x0);
        if (x0 >= pad && x0 + 14 - 1 + pad < w)
            dw_block512(K, 14, 0, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
        else
            dw_block512(K, 14, 1, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
    }
    for (; x0 < w; x0 += 7) {
        const int64_t valid = min64(7, w - x0);
        if (x0 >= pad && x0 + 7 - 1 + pad < w)
            dw_block512(K, 7, 0, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
        else
            dw_block512(K, 7, 1, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
    }
}

#define DEF_ROW512(K)                                                                           \
    static T512 void dw_row512_k##K(const float *x, int64_t h, int64_t w, int64_t c,           \
                                    const float *wt, __m512 bias, float *yrow, int64_t oy,     \
                                    __mmask16 mk) {                                             \
        dw_row512(K, x, h, w, c, wt, bias, yrow, oy, mk);                                       \
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

static T512 void dwconv_avx512(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                               const float *weight, const float *bias, float *y, int64_t y0,
                               int64_t y1) {
    for (int64_t oy = y0; oy < y1; oy++) {
        for (int64_t cb = 0; cb < c; cb += 16) {
            const int64_t left = c - cb;
            const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias + cb) : _mm512_setzero_ps();
            const float *xb = x + cb, *wb = weight + cb;
            float *yrow = y + oy * w * c + cb;
            switch (k) {
            case 3: dw_row512_k3(xb, h, w, c, wb, bv, yrow, oy, mk); break;
            case 5: dw_row512_k5(xb, h, w, c, wb, bv, yrow, oy, mk); break;
            case 7: dw_row512_k7(xb, h, w, c, wb, bv, yrow, oy, mk); break;
            default: dw_row512_any(xb, h, w, c, k, wb, bv, yrow, oy, mk); break;
            }
        }
    }
}

// MARK: - AVX2

// As dw_block512 with 8 lanes; MASKED loads and stores the block through the lane mask mk.
INLINE T256 void dw_block256(const int K, const int R, const int CHECK, const int MASKED,
                             const float *x, int64_t h, int64_t w, int64_t c, const float *wt,
                             __m256 bias, float *yrow, int64_t oy, int64_t x0, int64_t valid,
                             __m256i mk) {
    const int pad = K / 2;
#define LD(p) (MASKED ? _mm256_maskload_ps((p), mk) : _mm256_loadu_ps(p))
    __m256 acc[7];
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) acc[j] = bias;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xrow = x + (oy + ky - pad) * w * c;
        __m256 wv[7];
#pragma clang loop unroll(full)
        for (int kx = 0; kx < K; kx++) wv[kx] = LD(wt + (ky * K + kx) * c);
#pragma clang loop unroll(full)
        for (int t = 0; t < R + K - 1; t++) {
            const int64_t ix = x0 - pad + t;
            if (CHECK && (ix < 0 || ix >= w)) continue;
            const __m256 v = LD(xrow + ix * c);
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
            if (MASKED) _mm256_maskstore_ps(yrow + (x0 + j) * c, mk, acc[j]);
            else _mm256_storeu_ps(yrow + (x0 + j) * c, acc[j]);
        }
    }
#undef LD
}

INLINE T256 void dw_row256(const int K, const int MASKED, const float *x, int64_t h, int64_t w,
                           int64_t c, const float *wt, __m256 bias, float *yrow, int64_t oy,
                           __m256i mk) {
    const int pad = K / 2;
    for (int64_t x0 = 0; x0 < w; x0 += 7) {
        const int64_t valid = min64(7, w - x0);
        if (x0 >= pad && x0 + 7 - 1 + pad < w)
            dw_block256(K, 7, 0, MASKED, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
        else
            dw_block256(K, 7, 1, MASKED, x, h, w, c, wt, bias, yrow, oy, x0, valid, mk);
    }
}

#define DEF_ROW256(K)                                                                           \
    static T256 void dw_row256_k##K(const float *x, int64_t h, int64_t w, int64_t c,           \
                                    const float *wt, __m256 bias, float *yrow, int64_t oy,     \
                                    __m256i mk, int masked) {                                   \
        if (masked) dw_row256(K, 1, x, h, w, c, wt, bias, yrow, oy, mk);                        \
        else dw_row256(K, 0, x, h, w, c, wt, bias, yrow, oy, mk);                               \
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

static T256 void dwconv_avx2(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                             const float *weight, const float *bias, float *y, int64_t y0,
                             int64_t y1) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t oy = y0; oy < y1; oy++) {
        for (int64_t cb = 0; cb < c; cb += 8) {
            const int64_t left = c - cb;
            const int masked = left < 8;
            const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(masked ? (int)left : 8), lanes);
            const __m256 bv = bias ? _mm256_maskload_ps(bias + cb, mk) : _mm256_setzero_ps();
            const float *xb = x + cb, *wb = weight + cb;
            float *yrow = y + oy * w * c + cb;
            switch (k) {
            case 3: dw_row256_k3(xb, h, w, c, wb, bv, yrow, oy, mk, masked); break;
            case 5: dw_row256_k5(xb, h, w, c, wb, bv, yrow, oy, mk, masked); break;
            case 7: dw_row256_k7(xb, h, w, c, wb, bv, yrow, oy, mk, masked); break;
            default: dw_row256_any(xb, h, w, c, k, wb, bv, yrow, oy, mk); break;
            }
        }
    }
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
