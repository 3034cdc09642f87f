// Depthwise k x k convolution (k = 3, 5, 7; stride 1, zero padding (k - 1) / 2, NHWC) on the
// bfloat16 dot product: the bfloat16 models' depthwise layers on CPUs with AVX512_BF16
// (cnx_half.h, cnx_dwconv_nhwc_rows_bf16).
//
// vdpbf16ps adds to each float lane the two products of a pair of bfloat16 values, so a lane
// (one channel) takes two horizontal taps at once: a "pair pixel" P[ix] holds, for 16 channels,
// (x[ix], x[ix + 1]) rounded to bfloat16, and a weight pair (w[kx], w[kx + 1]) (w[k] = 0 for the
// last, odd tap). An output pixel is then (k + 1) / 2 dot products a kernel row instead of k
// FMAs: 28 instead of 49 at k = 7, each as fast as an FMA. The input rows of a group of output
// rows are converted once into pair rows (channel-blocked, zero columns on both sides, so no
// column test), the weights once a channel block; the accumulation is float32, bias first.
// Numerics: the inputs and weights are rounded to bfloat16 (nearest even, denormals as zero) and
// each pair adds its odd product, then its even one, each sum rounded to float with denormal
// results flushed (vdpbf16ps), in kernel-row order, pairs left to right: the scalar twin
// cnx_dwconv_nhwc_rows_bf16_ref does exactly that, bit for bit.
#include "cnx_half.h"

#include <string.h>

#include "hgemm_internal.h"
#include "thread_scratch.h"

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

void cnx_dwconv_nhwc_rows_bf16_ref(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                                   const float *bias, float *y, int64_t y0, int64_t y1) {
    const int64_t pad = (k - 1) / 2, pairs = (k + 1) / 2;
    y0 = max64(y0, 0);
    y1 = min64(y1, h);
    for (int64_t oy = y0; oy < y1; oy++)
        for (int64_t ox = 0; ox < w; ox++)
            for (int64_t ch = 0; ch < c; ch++) {
                float s = bias ? bias[ch] : 0.0f;
                for (int64_t ky = 0; ky < k; ky++) {
                    const int64_t iy = oy + ky - pad;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t q = 0; q < pairs; q++) {
                        const int64_t kx = 2 * q, ix = ox - pad + kx;
                        const float x0 = ix >= 0 && ix < w ? cnx_bf16_round_daz(x[(iy * w + ix) * c + ch]) : 0.0f;
                        const float x1 = ix + 1 >= 0 && ix + 1 < w ? cnx_bf16_round_daz(x[(iy * w + ix + 1) * c + ch]) : 0.0f;
                        const float w0 = cnx_bf16_round_daz(weight[(ky * k + kx) * c + ch]);
                        const float w1 = kx + 1 < k ? cnx_bf16_round_daz(weight[(ky * k + kx + 1) * c + ch]) : 0.0f;
                        s = cnx_bf16_dot_pair(s, x0, x1, w0, w1);
                    }
                }
                y[(oy * w + ox) * c + ch] = s;
            }
}

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#define T512BF __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

#define GROUP 32  // output rows per group of converted input rows
#define PADL 4   // zero pair pixels left of column 0 (P[-4 .. -1]; P[-1] = (0, x[0]))
// Zero pair pixels right of column w - 1: a block of outputs ending at column w reads up to
// P[w + 2]; on a map narrower than 7 columns one 7-pixel block reads up to P[8].
static inline int64_t pad_right(int64_t w) { return w >= 7 ? 3 : 10 - w; }

INLINE T512BF __mmask16 lanes(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

// Lane j of a pair: the words j (low half) and 16 + j (high half) of vcvtne2ps2bf16's result.
INLINE T512BF __m512i pair_index(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19,
                            3, 18, 2, 17, 1, 16, 0);
}

INLINE T512BF __m512i make_pair(__m512 lo, __m512 hi, __m512i index) {
    return _mm512_permutexvar_epi16(index, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// The pair rows of one channel block (from channel cb, `left` of them exist) of `rows` input
// rows (w pixels of c channels from x): row r, pair pixel ix (-PADL <= ix < w + pad_right(w)) at
// p + (r * wp + PADL + ix) * 16, wp = w + PADL + pad_right(w). Each input vector is loaded once.
static T512BF void pair_rows(uint32_t *p, const float *x, int64_t rows, int64_t w, int64_t c, int64_t left) {
    const int64_t wp = w + PADL + pad_right(w);
    const __m512i index = pair_index(), zero = _mm512_setzero_si512();
    const __mmask16 mk = lanes(left);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * w * c;
        uint32_t *d = p + r * wp * 16;
        for (int i = 0; i < PADL - 1; i++) _mm512_store_si512(d + i * 16, zero);
        __m512 lo = _mm512_setzero_ps();  // x[-1]
        for (int64_t ix = -1; ix < w; ix++) {
            // The loads are c floats apart, further than the hardware's stream prefetch looks.
            _mm_prefetch((const char *)(xr + (ix + 8) * c), _MM_HINT_T0);
            const __m512 hi = ix + 1 < w ? _mm512_maskz_loadu_ps(mk, xr + (ix + 1) * c) : _mm512_setzero_ps();
            _mm512_store_si512(d + (PADL + ix) * 16, make_pair(lo, hi, index));
            lo = hi;
        }
        for (int64_t i = PADL + w; i < wp; i++) _mm512_store_si512(d + i * 16, zero);
    }
}

// R outputs (oy, x0 .. x0 + R - 1) of one channel block; the first `valid` stored under mk.
// p: the block's pair rows, from input row r0; wq: K x Q weight pairs.
INLINE T512BF void dwb_block(const int K, const int R, const uint32_t *p, int64_t wp, int64_t r0, int64_t h,
                             const __m512i *wq, __m512 bias, float *yrow, int64_t sy, int64_t oy, int64_t x0,
                             int64_t valid, __mmask16 mk) {
    const int pad = K / 2, Q = (K + 1) / 2;
    __m512 acc[14];
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++) acc[j] = bias;
    const int64_t ky0 = max64(0, pad - oy), ky1 = min64(K, h - oy + pad);
    for (int64_t ky = ky0; ky < ky1; ky++) {
        // Pair pixel t of the window: ix = x0 - pad + t; output j takes pair q at t = j + 2q.
        const uint32_t *pr = p + ((oy + ky - pad - r0) * wp + PADL + x0 - pad) * 16;
        __m512i wv[4];
#pragma clang loop unroll(full)
        for (int q = 0; q < Q; q++) wv[q] = _mm512_load_si512(wq + ky * Q + q);
#pragma clang loop unroll(full)
        for (int t = 0; t < R + K - 1; t++) {
            const __m512i v = _mm512_load_si512(pr + t * 16);
#pragma clang loop unroll(full)
            for (int q = 0; q < Q; q++) {
                const int j = t - 2 * q;
                if (j >= 0 && j < R) acc[j] = _mm512_dpbf16_ps(acc[j], (__m512bh)v, (__m512bh)wv[q]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < R; j++)
        if (j < valid) _mm512_mask_storeu_ps(yrow + (x0 + j) * sy, mk, acc[j]);
}

// One output row of one channel block, in blocks of 7 to 14 pixels as even as they come (24
// columns: 12 + 12, not 14 + 7 + 7 with 4 outputs thrown away); a row narrower than 7 pixels
// is one 7-pixel block of which the first w are stored.
INLINE T512BF void dwb_row(const int K, const uint32_t *p, int64_t wp, int64_t r0, int64_t h, int64_t w,
                           const __m512i *wq, __m512 bias, float *yrow, int64_t sy, int64_t oy, __mmask16 mk) {
    if (w < 7) {
        dwb_block(K, 7, p, wp, r0, h, wq, bias, yrow, sy, oy, 0, w, mk);
        return;
    }
    const int64_t blocks = (w + 13) / 14, base = w / blocks, taller = w % blocks;
    for (int64_t b = 0, x0 = 0; b < blocks; b++) {
        const int64_t r = base + (b < taller);
        switch (r) {
#define DWB_CASE(R) \
    case R:         \
        dwb_block(K, R, p, wp, r0, h, wq, bias, yrow, sy, oy, x0, R, mk); \
        break;
            DWB_CASE(7) DWB_CASE(8) DWB_CASE(9) DWB_CASE(10) DWB_CASE(11) DWB_CASE(12) DWB_CASE(13) DWB_CASE(14)
#undef DWB_CASE
        }
        x0 += r;
    }
}

#define DEF_ROW(K)                                                                                               \
    static T512BF void dwb_row_k##K(const uint32_t *p, int64_t wp, int64_t r0, int64_t h, int64_t w,            \
                                    const __m512i *wq, __m512 bias, float *yrow, int64_t sy, int64_t oy,        \
                                    __mmask16 mk) {                                                              \
        dwb_row(K, p, wp, r0, h, w, wq, bias, yrow, sy, oy, mk);                                                 \
    }
DEF_ROW(3) DEF_ROW(5) DEF_ROW(7)

// Groups of up to GROUP output rows; for each channel block, the group's input rows are made
// pair rows (in the calling thread's buffer, about 150 KB for ConvNeXt's first stage on two
// threads: in L2) just before the block's outputs read them.
static T512BF int dwconv_bf16_avx512(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                                     const float *bias, float *y, int64_t y0, int64_t y1) {
    const int64_t pad = k / 2, Q = (k + 1) / 2, wp = w + PADL + pad_right(w);
    const int64_t rows_max = min64(h, GROUP + k - 1);
    uint32_t *pairs = (uint32_t *)cnx_thread_scratch(CNX_SCRATCH_DWCONV, (size_t)(rows_max * wp * 16));
    if (!pairs) return 0;
    void (*row)(const uint32_t *, int64_t, int64_t, int64_t, int64_t, const __m512i *, __m512, float *, int64_t, int64_t,
                __mmask16) = k == 3 ? dwb_row_k3 : k == 5 ? dwb_row_k5 : dwb_row_k7;
    const __m512i index = pair_index();
    for (int64_t g0 = y0; g0 < y1; g0 += GROUP) {
        const int64_t g1 = min64(y1, g0 + GROUP);
        const int64_t r0 = max64(0, g0 - pad), r1 = min64(h, g1 + pad);
        for (int64_t cb = 0; cb < c; cb += 16) {
            const __mmask16 mk = lanes(c - cb);
            pair_rows(pairs, x + r0 * w * c + cb, r1 - r0, w, c, c - cb);
            __m512i wq[7 * 4] __attribute__((aligned(64)));
            for (int64_t ky = 0; ky < k; ky++)
                for (int64_t q = 0; q < Q; q++) {
                    const int64_t kx = 2 * q;
                    const __m512 w0 = _mm512_maskz_loadu_ps(mk, weight + (ky * k + kx) * c + cb);
                    const __m512 w1 = kx + 1 < k ? _mm512_maskz_loadu_ps(mk, weight + (ky * k + kx + 1) * c + cb) : _mm512_setzero_ps();
                    wq[ky * Q + q] = make_pair(w0, w1, index);
                }
            const __m512 b = bias ? _mm512_maskz_loadu_ps(mk, bias + cb) : _mm512_setzero_ps();
            for (int64_t oy = g0; oy < g1; oy++) row(pairs, wp, r0, h, w, wq, b, y + oy * w * c + cb, c, oy, mk);
        }
    }
    return 1;
}
#endif

int cnx_dwconv_bf16_runs(int64_t k) {
#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
    return (k == 3 || k == 5 || k == 7) && cnx_hpath_current() == CNX_HPATH_AVX512_BF16;
#else
    (void)k;
    return 0;
#endif
}

void cnx_round_bf16_f32(const float *x, int64_t count, float *y) {
    // cnx_bf16_round_daz on the bits, branch-free so that the compiler vectorizes the loop:
    // a denormal becomes a zero of its sign, a NaN stays a quiet NaN, anything else rounds to
    // nearest even (the largest finite values carry into infinity).
    for (int64_t i = 0; i < count; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        const uint32_t mag = u & 0x7FFFFFFFu;
        const uint32_t flushed = mag < 0x00800000u ? u & 0x80000000u : u;
        const uint32_t rounded = (flushed + 0x7FFFu + ((flushed >> 16) & 1u)) & 0xFFFF0000u;
        const uint32_t r = mag > 0x7F800000u ? (u | 0x00400000u) & 0xFFFF0000u : rounded;
        memcpy(y + i, &r, 4);
    }
}

int cnx_dwconv_nhwc_rows_bf16(const float *x, int64_t h, int64_t w, int64_t c, int64_t k, const float *weight,
                              const float *bias, float *y, int64_t y0, int64_t y1) {
    y0 = max64(y0, 0);
    y1 = min64(y1, h);
#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
    if ((k == 3 || k == 5 || k == 7) && cnx_hpath_current() == CNX_HPATH_AVX512_BF16) {
        if (y0 >= y1 || w <= 0 || c <= 0) return 1;
        return dwconv_bf16_avx512(x, h, w, c, k, weight, bias, y, y0, y1);
    }
#endif
    (void)x, (void)h, (void)w, (void)c, (void)k, (void)weight, (void)bias, (void)y;
    return 0;
}
