// The reference arithmetic of int8 pointwise layers: the specification the fast int8 kernels
// (cnx_qgemm.h) are tested against, and what the reference executor runs.
#ifndef CNX_QREF_H
#define CNX_QREF_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// q = clamp(round_half_even(x * (1 / scale)) + clamp(zero, 0, 255), 0, 255), NaN -> 0, with
/// 1 / scale rounded to float once. The one u8 quantizer: cnx_quantize_u8_ref (cnx_qgemm.h) is
/// this function, and every SIMD path of cnx_quantize_u8 is tested bit-identical to it.
void cnx_quantize_u8_reference(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q);

/// y[i][j] = (sum_k a[i][k] w[k][j] - a_zero sum_k w[k][j]) * a_scale * w_scale[j] + bias[j]
/// (bias may be NULL); a is uint8 [m][k], w is int8 [k][n], y is float [m][n]. The integer sums
/// are exact in int32 for k < 2^16.
void cnx_qlinear_reference(int64_t m, int64_t n, int64_t k, const uint8_t *a, const int8_t *w,
                           int32_t a_zero, float a_scale, const float *w_scale, const float *bias,
                           float *y);

#ifdef __cplusplus
}
#endif
#endif
