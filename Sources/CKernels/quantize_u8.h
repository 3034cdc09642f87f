// The u8 quantization of one value: the single definition that the reference arithmetic
// (qref.c: cnx_quantize_u8_reference, which cnx_quantize_u8_ref is) and the int8 GEMMs'
// requantizing epilogues (fast_qgemm.c) use, and that the SIMD quantizers are tested against.
// Internal to Sources/CKernels.
#ifndef CNX_QUANTIZE_U8_H
#define CNX_QUANTIZE_U8_H

#include <math.h>
#include <stdint.h>

/// A u8 zero point: clamped to [0, 255].
static inline int32_t cnx_u8_zero(int32_t zero) { return zero < 0 ? 0 : zero > 255 ? 255 : zero; }

/// clamp(round_half_even(x * inv) + zero, 0, 255), NaN -> 0, for a zero already in [0, 255]
/// (cnx_u8_zero). Separate statements: nothing to contract into an FMA.
static inline uint8_t cnx_quantize_u8_one(float x, float inv, int32_t zero) {
    // nearbyintf rounds half to even in the default rounding mode.
    float v = nearbyintf(x * inv);
    v = v + (float)zero;
    if (!(v >= 0.0f)) v = 0.0f;  // also NaN
    if (v > 255.0f) v = 255.0f;
    return (uint8_t)(int32_t)v;
}

#endif
