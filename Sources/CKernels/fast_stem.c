// The stem's patch matrix (im2col): one output row of a k x k convolution with stride and zero
// padding, each output pixel's receptive field laid out as one row of the matrix the stem's
// weight multiplies (the GEMM, cnx_gemm_f32 or the int8 one, then adds the bias and applies the
// activation). Two input layouts, in the order of the weight's rows:
//   NCHW image [cin, h, w]:  row (c * k + ky) * k + kx  <-  x[c, iy, ix]
//   NHWC map   [h, w, cin]:  row (ky * k + kx) * cin + c <-  x[iy, ix, c]
// with iy = oy * stride - pad + ky, ix = ox * stride - pad + kx, and 0 outside the input.
#include "cnx_fast.h"

#include <string.h>

// One output pixel's patch row, element by element (the specification's loop for one ox).
static void patch_one(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k, int64_t stride,
                      int64_t pad, int64_t oy, int64_t ox, float *p) {
    for (int64_t c = 0; c < cin; c++) {
        for (int64_t ky = 0; ky < k; ky++) {
            for (int64_t kx = 0; kx < k; kx++) {
                const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                const int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                const int64_t dst = nhwc ? (ky * k + kx) * cin + c : (c * k + ky) * k + kx;
                p[dst] = inside ? (nhwc ? x[(iy * w + ix) * cin + c] : x[(c * h + iy) * w + ix]) : 0.0f;
            }
        }
    }
}

// The specification: every element by the formula, pixel by pixel.
void cnx_stem_patches_f32_ref(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k,
                              int64_t stride, int64_t pad, int64_t oy, int64_t ow, float *patches) {
    for (int64_t ox = 0; ox < ow; ox++) patch_one(x, cin, h, w, nhwc, k, stride, pad, oy, ox, patches + ox * cin * k * k);
}

// The output columns [*first, *last) whose receptive field lies inside [0, w) horizontally.
static inline void interior(int64_t w, int64_t k, int64_t stride, int64_t pad, int64_t ow, int64_t *first, int64_t *last) {
    int64_t a = (pad + stride - 1) / stride;
    int64_t b = w + pad - k >= 0 ? (w + pad - k) / stride + 1 : 0;
    if (a > ow) a = ow;
    if (b > ow) b = ow;
    if (b < a) b = a;
    *first = a;
    *last = b;
}

// Interior columns of an NCHW image: K neighbouring pixels of one plane row per (c, ky); K a
// compile-time constant in the specialised copies below, so the copy unrolls.
static inline void nchw_interior(const float *x, int64_t cin, int64_t h, int64_t w, const int64_t K, int64_t stride,
                                 int64_t pad, int64_t oy, int64_t a, int64_t b, float *patches) {
    const int64_t row = cin * K * K;
    for (int64_t c = 0; c < cin; c++) {
        for (int64_t ky = 0; ky < K; ky++) {
            const int64_t iy = oy * stride - pad + ky;
            float *d = patches + a * row + (c * K + ky) * K;
            if (iy < 0 || iy >= h) {
                for (int64_t ox = a; ox < b; ox++, d += row) {
                    for (int64_t kx = 0; kx < K; kx++) d[kx] = 0.0f;
                }
                continue;
            }
            const float *s = x + (c * h + iy) * w + a * stride - pad;
            for (int64_t ox = a; ox < b; ox++, d += row, s += stride) {
                for (int64_t kx = 0; kx < K; kx++) d[kx] = s[kx];
            }
        }
    }
}

static void nchw_interior_3(const float *x, int64_t cin, int64_t h, int64_t w, int64_t stride, int64_t pad, int64_t oy,
                            int64_t a, int64_t b, float *patches) {
    nchw_interior(x, cin, h, w, 3, stride, pad, oy, a, b, patches);
}
static void nchw_interior_4(const float *x, int64_t cin, int64_t h, int64_t w, int64_t stride, int64_t pad, int64_t oy,
                            int64_t a, int64_t b, float *patches) {
    nchw_interior(x, cin, h, w, 4, stride, pad, oy, a, b, patches);
}

// Contiguous runs: an NHWC patch row (ky) is k whole neighbouring pixels, one memcpy; an NCHW
// patch row k neighbouring pixels of one channel plane. Border columns go element by element.
static void stem_patches_runs(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k,
                              int64_t stride, int64_t pad, int64_t oy, int64_t ow, float *patches) {
    const int64_t row = cin * k * k;
    int64_t a, b;
    interior(w, k, stride, pad, ow, &a, &b);
    for (int64_t ox = 0; ox < a; ox++) patch_one(x, cin, h, w, nhwc, k, stride, pad, oy, ox, patches + ox * row);
    for (int64_t ox = b; ox < ow; ox++) patch_one(x, cin, h, w, nhwc, k, stride, pad, oy, ox, patches + ox * row);
    if (a >= b) return;
    if (nhwc) {
        for (int64_t ky = 0; ky < k; ky++) {
            const int64_t iy = oy * stride - pad + ky;
            for (int64_t ox = a; ox < b; ox++) {
                float *d = patches + ox * row + ky * k * cin;
                if (iy < 0 || iy >= h) {
                    memset(d, 0, (size_t)(k * cin) * sizeof(float));
                } else {
                    memcpy(d, x + (iy * w + ox * stride - pad) * cin, (size_t)(k * cin) * sizeof(float));
                }
            }
        }
    } else if (k == 3) {
        nchw_interior_3(x, cin, h, w, stride, pad, oy, a, b, patches);
    } else if (k == 4) {
        nchw_interior_4(x, cin, h, w, stride, pad, oy, a, b, patches);
    } else {
        nchw_interior(x, cin, h, w, k, stride, pad, oy, a, b, patches);
    }
}

void cnx_stem_patches_f32(const float *x, int64_t cin, int64_t h, int64_t w, int nhwc, int64_t k,
                          int64_t stride, int64_t pad, int64_t oy, int64_t ow, float *patches) {
    if (ow <= 0 || cin <= 0 || k <= 0) return;
    // Data movement only: every SIMD path takes the run-copying version, CNX_ISA=scalar the
    // element-by-element specification (the results are identical).
    if (cnx_isa_current() == CNX_ISA_SCALAR) {
        cnx_stem_patches_f32_ref(x, cin, h, w, nhwc, k, stride, pad, oy, ow, patches);
    } else {
        stem_patches_runs(x, cin, h, w, nhwc, k, stride, pad, oy, ow, patches);
    }
}
