// STAND-IN until the `fuse` branch is merged: the activation and RMSNorm entry points that branch
// adds to cnx_fast.h (same names, same arguments), declared here so the arm64 kernels of this
// branch (neon_*.c) can be dispatched to and tested. On merging, delete this header and
// fuse_standin.c, and give fuse's cnx_activation_inplace_f32 / cnx_rmsnorm_rows_f32 dispatchers
// the `#if CNX_ARM64` cases that fuse_standin.c has.
#ifndef CNX_FUSE_STANDIN_H
#define CNX_FUSE_STANDIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// x = act(x) in place; act: 0 none, 1 exact GELU 0.5 x (1 + erf(x / sqrt 2)), 2 tanh GELU
/// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), 3 SiLU x sigmoid(x).
void cnx_activation_inplace_f32(float *x, int64_t count, int act);
void cnx_activation_inplace_f32_ref(float *x, int64_t count, int act);

/// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gamma + beta over each of `rows` rows of c values;
/// gamma and beta may each be NULL (1 and 0). y may equal x.
void cnx_rmsnorm_rows_f32(const float *x, int64_t rows, int64_t c, float eps, const float *gamma,
                          const float *beta, float *y);
void cnx_rmsnorm_rows_f32_ref(const float *x, int64_t rows, int64_t c, float eps,
                              const float *gamma, const float *beta, float *y);

#ifdef __cplusplus
}
#endif
#endif
