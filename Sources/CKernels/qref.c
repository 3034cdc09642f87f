#include "cnx_qref.h"
#include "quantize_u8.h"
#include <math.h>
#include <stdlib.h>

void cnx_quantize_u8_reference(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q) {
    const float inv = 1.0f / scale;
    const int32_t z = cnx_u8_zero(zero);
    for (int64_t i = 0; i < count; i++) q[i] = cnx_quantize_u8_one(x[i], inv, z);
}

void cnx_qlinear_reference(int64_t m, int64_t n, int64_t k, const uint8_t *a, const int8_t *w,
                           int32_t a_zero, float a_scale, const float *w_scale, const float *bias,
                           float *y) {
    int32_t *colsum = (int32_t *)calloc((size_t)(n > 0 ? n : 1), sizeof(int32_t));
    if (!colsum) return;
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t j = 0; j < n; j++) colsum[j] += w[kk * n + j];
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            int32_t acc = 0;
            for (int64_t kk = 0; kk < k; kk++) acc += (int32_t)a[i * k + kk] * (int32_t)w[kk * n + j];
            const int32_t centred = acc - a_zero * colsum[j];
            y[i * n + j] = (float)centred * (a_scale * w_scale[j]) + (bias ? bias[j] : 0.0f);
        }
    }
    free(colsum);
}
