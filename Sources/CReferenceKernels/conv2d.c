#include "cnx_kernels.h"
#include <string.h>

static int is_pointwise(const cnx_conv2d_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pt == 0 && s->pl == 0 &&
           s->pb == 0 && s->pr == 0;
}

static int is_depthwise(const cnx_conv2d_shape *s) {
    return s->groups == s->c && s->m == s->c;
}

size_t cnx_conv2d_scratch_floats(const cnx_conv2d_shape *s) {
    if (is_depthwise(s) || is_pointwise(s)) return 0;
    return (size_t)(s->c / s->groups) * (size_t)s->kh * (size_t)s->kw * (size_t)s->oh * (size_t)s->ow;
}

// Depthwise: each output channel reads one input channel, so a direct loop beats im2col.
static void depthwise(const cnx_conv2d_shape *s, const float *x, const float *w, const float *b,
                      float *y) {
    const int64_t plane_in = s->h * s->w, plane_out = s->oh * s->ow;
    for (int64_t n = 0; n < s->n; n++) {
        for (int64_t c = 0; c < s->c; c++) {
            const float *xp = x + (n * s->c + c) * plane_in;
            const float *wp = w + c * s->kh * s->kw;
            float *yp = y + (n * s->c + c) * plane_out;
            const float bias = b ? b[c] : 0.0f;
            for (int64_t oy = 0; oy < s->oh; oy++) {
                for (int64_t ox = 0; ox < s->ow; ox++) {
                    float acc = bias;
                    for (int64_t ky = 0; ky < s->kh; ky++) {
                        const int64_t iy = oy * s->sh - s->pt + ky * s->dh;
                        if (iy < 0 || iy >= s->h) continue;
                        for (int64_t kx = 0; kx < s->kw; kx++) {
                            const int64_t ix = ox * s->sw - s->pl + kx * s->dw;
                            if (ix < 0 || ix >= s->w) continue;
                            acc += xp[iy * s->w + ix] * wp[ky * s->kw + kx];
                        }
                    }
                    yp[oy * s->ow + ox] = acc;
                }
            }
        }
    }
}

// Lays the receptive fields of one group's channels out as rows (cg*kh*kw) x columns (oh*ow).
static void im2col(const cnx_conv2d_shape *s, const float *x, int64_t cg, float *col) {
    const int64_t plane_out = s->oh * s->ow;
    for (int64_t c = 0; c < cg; c++) {
        const float *xp = x + c * s->h * s->w;
        for (int64_t ky = 0; ky < s->kh; ky++) {
            for (int64_t kx = 0; kx < s->kw; kx++) {
                float *row = col + ((c * s->kh + ky) * s->kw + kx) * plane_out;
                for (int64_t oy = 0; oy < s->oh; oy++) {
                    const int64_t iy = oy * s->sh - s->pt + ky * s->dh;
                    float *out = row + oy * s->ow;
                    if (iy < 0 || iy >= s->h) {
                        memset(out, 0, sizeof(float) * (size_t)s->ow);
                        continue;
                    }
                    for (int64_t ox = 0; ox < s->ow; ox++) {
                        const int64_t ix = ox * s->sw - s->pl + kx * s->dw;
                        out[ox] = (ix < 0 || ix >= s->w) ? 0.0f : xp[iy * s->w + ix];
                    }
                }
            }
        }
    }
}

void cnx_conv2d_f32(const cnx_conv2d_shape *s, const float *x, const float *w, const float *b,
                    float *y, float *scratch) {
    if (is_depthwise(s)) {
        depthwise(s, x, w, b, y);
        return;
    }
    const int64_t cg = s->c / s->groups, mg = s->m / s->groups;
    const int64_t k = cg * s->kh * s->kw, plane_out = s->oh * s->ow;
    for (int64_t n = 0; n < s->n; n++) {
        for (int64_t g = 0; g < s->groups; g++) {
            const float *xg = x + (n * s->c + g * cg) * s->h * s->w;
            float *yg = y + (n * s->m + g * mg) * plane_out;
            const float *cols = xg;
            if (!is_pointwise(s)) {
                im2col(s, xg, cg, scratch);
                cols = scratch;
            }
            for (int64_t m = 0; m < mg; m++) {
                const float bias = b ? b[g * mg + m] : 0.0f;
                float *row = yg + m * plane_out;
                for (int64_t p = 0; p < plane_out; p++) row[p] = bias;
            }
            cnx_sgemm(0, 0, mg, plane_out, k, 1.0f, w + g * mg * k, k, cols, plane_out, 1.0f, yg, plane_out);
        }
    }
}
