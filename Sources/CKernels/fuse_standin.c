// STAND-IN until the `fuse` branch is merged (see include/cnx_fuse_standin.h): scalar twins of the
// activations and RMSNorm, and their dispatchers with the arm64 case.
#include "cnx_fast.h"
#include "cnx_fuse_standin.h"
#include "neon_internal.h"

#include <math.h>

static inline float act_scalar(float x, int act) {
    switch (act) {
    case 1: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 2: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case 3: return x / (1.0f + expf(-x));
    default: return x;
    }
}

void cnx_activation_inplace_f32_ref(float *x, int64_t count, int act) {
    for (int64_t i = 0; i < count; i++) x[i] = act_scalar(x[i], act);
}

void cnx_activation_inplace_f32(float *x, int64_t count, int act) {
#if CNX_ARM64
    if (cnx_isa_current() == CNX_ISA_NEON) {
        cnx_activation_inplace_f32_neon(x, count, act);
        return;
    }
#endif
    if (act == 1) cnx_gelu_inplace_f32(x, count);
    else cnx_activation_inplace_f32_ref(x, count, act);
}

void cnx_rmsnorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                              const float *gamma, const float *beta, float *y) {
    if (c <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        float *yr = y + r * c;
        double sq = 0.0;
        for (int64_t i = 0; i < c; i++) sq += (double)xr[i] * (double)xr[i];
        const float rstd = (float)(1.0 / sqrt(sq / (double)c + (double)eps));
        for (int64_t i = 0; i < c; i++) {
            float v = xr[i] * rstd;
            if (gamma) v *= gamma[i];
            if (beta) v += beta[i];
            yr[i] = v;
        }
    }
}

void cnx_rmsnorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps, const float *gamma,
                          const float *beta, float *y) {
#if CNX_ARM64
    if (cnx_isa_current() == CNX_ISA_NEON) {
        cnx_rmsnorm_rows_f32_neon(x, rows, c, eps, gamma, beta, y);
        return;
    }
#endif
    cnx_rmsnorm_rows_f32_ref(x, rows, c, eps, gamma, beta, y);
}
