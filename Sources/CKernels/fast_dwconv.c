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
#include "thread_scratch.h"

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

// MARK: - The driver shared by the SIMD paths (x86: the NEON path has its own loop)

// What a SIMD path supplies to the driver: channels in blocks of `lanes` floats.
typedef struct {
    int lanes;
    // Channel counts that are a multiple of this run on the copy (below); others in place.
    int64_t copy_multiple;
    // Each of `pixels` pixels (`stride` floats apart in src) as blocks of `lanes` channels: block b of
    // pixel p at dst + b * plane + p * lanes (64-byte aligned), the last block zero past channel c.
    void (*pack)(float *dst, int64_t plane, const float *src, int64_t pixels, int64_t c, int64_t stride);
    // Output rows oy0..oy1 of one channel block (k = 3, 5, 7): x, wt, bias (or NULL) and y point at
    // the block's first channel, `left` channels from it exist. Strides (floats): sx between input
    // pixels, whose rows are w * sx apart and start at row r0; sw between taps; sy between output pixels.
    void (*rows)(int64_t k, const float *x, int64_t r0, int64_t h, int64_t w, int64_t sx, const float *wt, int64_t sw,
                 const float *bias, int64_t left, float *y, int64_t sy, int64_t oy0, int64_t oy1);
    // The same for any k, in place (pixels c floats apart).
    void (*rows_any)(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *wt, const float *bias,
                     int64_t left, float *y, int64_t oy0, int64_t oy1);
} dw_isa;

// Output rows per packed group (below).
#define DW_GROUP 8

// k = 3, 5, 7: groups of up to DW_GROUP output rows. The input rows a group reads are first
// copied, in pixel order (each pixel's channels read in one sequential pass), into a blocked
// layout: channel block by block, each block's rows with its `lanes` floats a pixel; a block's
// k x k weights likewise (`lanes` floats a tap). In place a block's pixels and taps are c floats
// apart, and with c a multiple of 512 (ConvNeXt-B's 512 and 1024 channels: 2 or 4 KB) every one
// of them falls in the same one or two L1 sets, so each evicts the last: those stages ran at a
// third of the others' speed. The arithmetic and its order are unchanged. Other channel counts
// run in place, where their pixels spread over enough sets and the copy only costs time: on an
// AMD EPYC (Zen 4), one thread, AVX-512 in place against the copy: 56 x 56 x 96 0.258 against
// 0.302 ms, 28 x 28 x 192 0.127 / 0.151, 14 x 14 x 384 0.061 / 0.072, 7 x 7 x 768 0.027 / 0.032,
// 96 x 96 x 128 1.11 / 1.35, 48 x 48 x 256 0.52 / 0.62; but 24 x 24 x 512 0.641 / 0.306. AVX2
// (8 lanes: more passes over each pixel's lines) also needs the copy at 256 channels (0.94 / 0.72
// ms) and is level at 128. Without memory for the copy, the rows run in place.
static void dw_driver(const dw_isa *isa, const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                      const float *bias, float *y, int64_t y0, int64_t y1) {
    const int64_t L = isa->lanes, pad = (k - 1) / 2, blocks = (c + L - 1) / L;
    const int fixed = k == 3 || k == 5 || k == 7;
    const int64_t rows_max = min64(h, DW_GROUP + k - 1);
    const int copy = fixed && c % isa->copy_multiple == 0;
    float *pack = copy ? cnx_thread_scratch(CNX_SCRATCH_DWCONV, (size_t)((rows_max * w * blocks + k * k) * L)) : NULL;
    for (int64_t g0 = y0; g0 < y1; g0 += DW_GROUP) {
        const int64_t g1 = min64(y1, g0 + DW_GROUP);
        const int64_t r0 = max64(0, g0 - pad), r1 = min64(h, g1 + pad), plane = (r1 - r0) * w * L;
        float *wl = pack, *xl = pack ? pack + k * k * L : NULL;
        if (pack) isa->pack(xl, plane, x + r0 * w * c, (r1 - r0) * w, c, c);
        for (int64_t cb = 0; cb < c; cb += L) {
            const float *bb = bias ? bias + cb : NULL;
            if (!fixed) {
                isa->rows_any(x + cb, h, w, c, k, weight + cb, bb, c - cb, y + cb, g0, g1);
            } else if (!pack) {
                isa->rows(k, x + cb, 0, h, w, c, weight + cb, c, bb, c - cb, y + cb, c, g0, g1);
            } else {
                // This block's taps: k * k "pixels" of the weights, c floats apart, one block each.
                isa->pack(wl, 0, weight + cb, k * k, c - cb < L ? c - cb : L, c);
                isa->rows(k, xl + (cb / L) * plane, r0, h, w, L, wl, L, bb, c - cb, y + cb, c, g0, g1);
            }
        }
    }
}

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

// The driver's entries (dw_isa, below) for 16-channel blocks. `left`: channels from the
// block's first on (the block uses at most 16).
INLINE T512 __mmask16 mask512(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

static T512 void dw512_rows(int64_t k, const float *x, int64_t r0, int64_t h, int64_t w, int64_t sx, const float *wt,
                            int64_t sw, const float *bias, int64_t left, float *y, int64_t sy, int64_t oy0, int64_t oy1) {
    const __mmask16 mk = mask512(left);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps();
    for (int64_t oy = oy0; oy < oy1; oy++) {
        float *yrow = y + oy * w * sy;
        if (k == 3) dw_row512_k3(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk);
        else if (k == 5) dw_row512_k5(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk);
        else dw_row512_k7(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk);
    }
}

static T512 void dw512_rows_any(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *wt,
                                const float *bias, int64_t left, float *y, int64_t oy0, int64_t oy1) {
    const __mmask16 mk = mask512(left);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps();
    for (int64_t oy = oy0; oy < oy1; oy++) dw_row512_any(x, h, w, c, k, wt, bv, y + oy * w * c, oy, mk);
}

static T512 void dw512_pack(float *dst, int64_t plane, const float *src, int64_t pixels, int64_t c, int64_t stride) {
    const int64_t blocks = (c + 15) / 16;
    for (int64_t p = 0; p < pixels; p++)
        for (int64_t b = 0; b < blocks; b++)
            _mm512_store_ps(dst + b * plane + p * 16, _mm512_maskz_loadu_ps(mask512(c - b * 16), src + p * stride + b * 16));
}

static const dw_isa DW_AVX512 = {16, 512, dw512_pack, dw512_rows, dw512_rows_any};

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

// The driver's entries for 8-channel blocks (as the AVX-512 ones).
INLINE T256 __m256i mask256(int64_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left < 8 ? (int)left : 8), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static T256 void dw256_rows(int64_t k, const float *x, int64_t r0, int64_t h, int64_t w, int64_t sx, const float *wt,
                            int64_t sw, const float *bias, int64_t left, float *y, int64_t sy, int64_t oy0, int64_t oy1) {
    const __m256i mk = mask256(left);
    const int masked = left < 8;
    const __m256 bv = bias ? _mm256_maskload_ps(bias, mk) : _mm256_setzero_ps();
    for (int64_t oy = oy0; oy < oy1; oy++) {
        float *yrow = y + oy * w * sy;
        if (k == 3) dw_row256_k3(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk, masked);
        else if (k == 5) dw_row256_k5(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk, masked);
        else dw_row256_k7(x, r0, h, w, sx, wt, sw, bv, yrow, sy, oy, mk, masked);
    }
}

static T256 void dw256_rows_any(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *wt,
                                const float *bias, int64_t left, float *y, int64_t oy0, int64_t oy1) {
    const __m256i mk = mask256(left);
    const __m256 bv = bias ? _mm256_maskload_ps(bias, mk) : _mm256_setzero_ps();
    for (int64_t oy = oy0; oy < oy1; oy++) dw_row256_any(x, h, w, c, k, wt, bv, y + oy * w * c, oy, mk);
}

static T256 void dw256_pack(float *dst, int64_t plane, const float *src, int64_t pixels, int64_t c, int64_t stride) {
    const int64_t blocks = (c + 7) / 8;
    for (int64_t p = 0; p < pixels; p++)
        for (int64_t b = 0; b < blocks; b++)
            _mm256_store_ps(dst + b * plane + p * 8, _mm256_maskload_ps(src + p * stride + b * 8, mask256(c - b * 8)));
}

static const dw_isa DW_AVX2 = {8, 256, dw256_pack, dw256_rows, dw256_rows_any};

#endif  // CNX_X86

void cnx_dwconv_nhwc_rows_f32(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                              const float *weight, const float *bias, float *y, int64_t y0,
                              int64_t y1) {
    y0 = max64(y0, 0);
    y1 = min64(y1, h);
    if (y0 >= y1 || w <= 0 || c <= 0 || k <= 0) return;
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: dw_driver(&DW_AVX512, x, h, w, c, k, weight, bias, y, y0, y1); return;
    case CNX_ISA_AVX2: dw_driver(&DW_AVX2, x, h, w, c, k, weight, bias, y, y0, y1); return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_dwconv_nhwc_rows_f32_neon(x, h, w, c, k, weight, bias, y, y0, y1); return;
#endif
    default: cnx_dwconv_nhwc_rows_f32_ref(x, h, w, c, k, weight, bias, y, y0, y1); return;
    }
}
