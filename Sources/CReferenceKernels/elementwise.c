#include "cnx_kernels.h"
#include "cnx_fast.h"
#include <math.h>

void cnx_erf_f32(const float *x, float *y, int64_t count) {
    for (int64_t i = 0; i < count; i++) y[i] = erff(x[i]);
}

void cnx_gelu_f32(const float *x, float *y, int64_t count, int tanh_approximation) {
    if (tanh_approximation) {
        const float k = 0.7978845608028654f; // sqrt(2 / pi)
        for (int64_t i = 0; i < count; i++) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        }
    } else {
        for (int64_t i = 0; i < count; i++) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        }
    }
}

void cnx_layernorm_lastaxis_f32(const float *x, int64_t rows, int64_t cols, const float *gamma,
                                const float *beta, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        double mean = 0.0;
        for (int64_t i = 0; i < cols; i++) mean += xr[i];
        mean /= (double)cols;
        double var = 0.0;
        for (int64_t i = 0; i < cols; i++) {
            const double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)cols;
        const float inv = (float)(1.0 / sqrt(var + (double)eps));
        const float mu = (float)mean;
        for (int64_t i = 0; i < cols; i++) {
            float v = (xr[i] - mu) * inv;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}

void cnx_reduce_middle_f32(const float *x, int64_t outer, int64_t axis, int64_t inner, int op,
                           float *y) {
    for (int64_t o = 0; o < outer; o++) {
        float *yo = y + o * inner;
        for (int64_t i = 0; i < inner; i++) {
            double acc = 0.0;
            const float *xp = x + o * axis * inner + i;
            if (op == 1) {
                for (int64_t a = 0; a < axis; a++) acc += (double)xp[a * inner] * xp[a * inner];
                yo[i] = (float)sqrt(acc);
            } else {
                for (int64_t a = 0; a < axis; a++) acc += xp[a * inner];
                yo[i] = op == 0 ? (float)(acc / (double)axis) : (float)acc;
            }
        }
    }
}

void cnx_dwconv_nhwc_f32(const float *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t k,
                         const float *weight, const float *bias, float *y) {
    // Image by image on the fast kernels' scalar specification (cnx_fast.h): per output, the bias
    // plus the taps in (ky, kx) order, those outside the image skipped.
    for (int64_t b = 0; b < n; b++)
        cnx_dwconv_nhwc_rows_f32_ref(x + b * h * w * c, h, w, c, k, weight, bias, y + b * h * w * c, 0, h);
}
