// Shared by the arm64 kernels (neon_*.c): CPU feature bits, the entry points the dispatchers of
// fast_*.c call, and the vector activations every epilogue uses. Not API.
//
// AArch64 always has Advanced SIMD (NEON) with fused multiply-add, so the NEON paths need no
// target attribute. The dot-product (FEAT_DotProd: SDOT/UDOT) and int8 matrix-multiply
// (FEAT_I8MM: USDOT/SUDOT/SMMLA) instructions are optional: the functions using them carry a
// per-function target attribute and run only when cnx_arm64_features() reports the extension.
#ifndef CNX_NEON_INTERNAL_H
#define CNX_NEON_INTERNAL_H

#include <stdint.h>

#if defined(__aarch64__) && !defined(CNX_NO_SIMD)
#define CNX_ARM64 1
#endif

/// Optional AArch64 extensions the CPU and OS support (Linux: getauxval HWCAP/HWCAP2; Apple:
/// the hw.optional.arm.FEAT_* sysctls; elsewhere what the compiler was told to assume).
enum {
    CNX_ARM64_DOTPROD = 1u << 0,  // SDOT / UDOT (Armv8.2 optional, Armv8.4 mandatory)
    CNX_ARM64_I8MM = 1u << 1,     // USDOT / SUDOT / SMMLA / UMMLA / USMMLA (Armv8.6)
    CNX_ARM64_BF16 = 1u << 2,     // BFDOT / BFMMLA (Armv8.6); detected, not used yet
};
unsigned cnx_arm64_features(void);

#if CNX_ARM64
#define CNX_QGEMM_INTERNAL
#include "cnx_qgemm.h"

#include <arm_neon.h>
#include <string.h>

// Per-function targets for the optional instructions. GCC's arm_neon.h guards the intrinsics
// with an architecture level, so GCC needs `arch=`; clang takes the feature name.
#if defined(__clang__)
#define CNX_TARGET_DOTPROD __attribute__((target("dotprod")))
#define CNX_TARGET_I8MM __attribute__((target("i8mm")))
#else
#define CNX_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define CNX_TARGET_I8MM __attribute__((target("arch=armv8.2-a+i8mm")))
#endif
#define CNX_INLINE static inline __attribute__((always_inline))
// Full unrolling of the constant-trip loops of the register tiles (GCC and clang both take it).
#define CNX_UNROLL _Pragma("GCC unroll 32")

// The activation codes of every `int act` (the fuse branch names them CNX_ACT_*).
enum { NEON_ACT_NONE = 0, NEON_ACT_GELU = 1, NEON_ACT_GELU_TANH = 2, NEON_ACT_SILU = 3, NEON_ACT_GELU_QUADRATIC = 4 };

// Float kernels (cnx_fast.h semantics), chosen when cnx_isa_current() == CNX_ISA_NEON.
void cnx_gemm_f32_neon(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *packed_b, const float *bias, int act, const float *residual,
                       int64_t ldr, float *c, int64_t ldc);
void cnx_dwconv_nhwc_rows_f32_neon(const float *x, int64_t h, int64_t w, int64_t c, int64_t k,
                                   const float *weight, const float *bias, float *y, int64_t y0,
                                   int64_t y1);
void cnx_layernorm_rows_f32_neon(const float *x, int64_t rows, int64_t c, float eps,
                                 const float *gamma, const float *beta, float *y);
void cnx_rmsnorm_rows_f32_neon(const float *x, int64_t rows, int64_t c, float eps,
                               const float *gamma, const float *beta, float *y);
void cnx_activation_inplace_f32_neon(float *x, int64_t count, int act);

// Int8 kernels (cnx_qgemm.h semantics). `level` is the cnx_qisa path: CNX_QISA_NEON (widening
// multiply-accumulate), CNX_QISA_DOTPROD (SDOT on offset activations) or CNX_QISA_I8MM (SUDOT).
void cnx_qgemm_run_neon(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, const cnx_qjob *job, int level);
void cnx_qepilogue_neon(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                        const cnx_qjob *job);
void cnx_quantize_u8_neon(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q);

// MARK: - Vector activations

// GELU's Q(a) = Phi(-a) on [0, 6): the table of the AVX-512 GELU (gelu_table.c).
#include "gelu_table.h"
#define NEON_GELU_AMAX 6.0f

// The table's row j as 64 bytes for TBL.
CNX_INLINE uint8x16x4_t neon_gelu_row(int j) {
    const uint8_t *p = (const uint8_t *)cnx_gelu_q16[j];
    uint8x16x4_t t;
    t.val[0] = vld1q_u8(p);
    t.val[1] = vld1q_u8(p + 16);
    t.val[2] = vld1q_u8(p + 32);
    t.val[3] = vld1q_u8(p + 48);
    return t;
}

// Exact GELU 0.5 x (1 + erf(x / sqrt 2)) as max(x, 0) - |x| Q(|x|): the AVX-512 formula operation
// for operation (same clamps, same fused multiply-adds), so the two give the same bits. TBL
// picks each lane's coefficient: lane index i becomes the byte indices 4i .. 4i + 3.
CNX_INLINE float32x4_t neon_gelu(float32x4_t x) {
    const float32x4_t a = vabsq_f32(x);
    const float32x4_t s = vminq_f32(vmulq_n_f32(a, 16.0f / NEON_GELU_AMAX), vdupq_n_f32(15.99999f));
    const float32x4_t f = vrndmq_f32(s);
    const uint32x4_t idx = vcvtq_u32_f32(f);  // NaN -> 0; such lanes are masked off below
    const uint8x16_t bytes = vreinterpretq_u8_u32(vmlaq_n_u32(vdupq_n_u32(0x03020100u), idx, 0x04040404u));
    const float32x4_t u = vsubq_f32(s, f);
    float32x4_t p = vreinterpretq_f32_u8(vqtbl4q_u8(neon_gelu_row(5), bytes));
    CNX_UNROLL
    for (int j = 4; j >= 0; j--)
        p = vfmaq_f32(vreinterpretq_f32_u8(vqtbl4q_u8(neon_gelu_row(j), bytes)), p, u);
    const float32x4_t relu = vmaxq_f32(vdupq_n_f32(0.0f), x);  // NaN stays NaN
    const uint32x4_t near = vcltq_f32(a, vdupq_n_f32(NEON_GELU_AMAX));
    return vbslq_f32(near, vfmsq_f32(relu, a, p), relu);  // relu - a p where |x| < 6
}

// 16 bytes of row j of the quadratic GELU's table (32 floats, 128 bytes) at byte indices 0..127:
// two 64-byte lookups, each 0 where its half does not hold the index.
CNX_INLINE float32x4_t neon_gelu_quadratic_coef(int j, uint8x16_t bytes) {
    const uint8_t *p = (const uint8_t *)cnx_gelu_q32d2[j];
    uint8x16x4_t lo, hi;
    for (int k = 0; k < 4; k++) {
        lo.val[k] = vld1q_u8(p + 16 * k);
        hi.val[k] = vld1q_u8(p + 64 + 16 * k);
    }
    const uint8x16_t b = vorrq_u8(vqtbl4q_u8(lo, bytes), vqtbl4q_u8(hi, vsubq_u8(bytes, vdupq_n_u8(64))));
    return vreinterpretq_f32_u8(b);
}

// The quadratic GELU (CNX_ACT_GELU_QUADRATIC, activation.h's cnx_gelu_quadratic_scalar) bit for
// bit: the same product, floor, fused multiply-adds and selection.
CNX_INLINE float32x4_t neon_gelu_quadratic(float32x4_t x) {
    const float32x4_t a = vabsq_f32(x);
    const float32x4_t s = vmulq_n_f32(a, 32.0f / 6.0f);
    const float32x4_t f = vrndmq_f32(s);
    const uint32x4_t idx = vandq_u32(vcvtq_u32_f32(f), vdupq_n_u32(31));  // NaN -> 0; lanes past 32 masked off below
    const uint8x16_t bytes = vreinterpretq_u8_u32(vmlaq_n_u32(vdupq_n_u32(0x03020100u), idx, 0x04040404u));
    const float32x4_t u = vsubq_f32(s, f);
    float32x4_t p = vfmaq_f32(neon_gelu_quadratic_coef(1, bytes), neon_gelu_quadratic_coef(2, bytes), u);
    p = vfmaq_f32(neon_gelu_quadratic_coef(0, bytes), p, u);
    // max(x, 0) as vmaxps(0, x): x where x is not negative (NaN, -0 included), else +0.
    const float32x4_t relu = vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), x);
    const uint32x4_t near = vcltq_f32(s, vdupq_n_f32(32.0f));
    return vbslq_f32(near, vfmsq_f32(relu, a, p), relu);
}

// exp(x): 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in two parts (Cody-Waite), exp(r) by
// its Taylor polynomial of degree 7 (|r| <= ln 2 / 2: truncation below 6e-9 relative). Where the
// result would be denormal (x < ln 2^-126) it is flushed to 0; past ln FLT_MAX it is +inf; NaN
// stays NaN.
#define NEON_EXP_LO -87.3365479f  // ln 2^-126
#define NEON_EXP_HI 88.7228394f   // ln FLT_MAX
CNX_INLINE float32x4_t neon_exp(float32x4_t x) {
    const float32x4_t xc = vmaxq_f32(vminq_f32(x, vdupq_n_f32(NEON_EXP_HI)), vdupq_n_f32(NEON_EXP_LO));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(xc, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f));  // ln 2, high part (exact n * hi)
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));          // ln 2 - hi
    float32x4_t p = vdupq_n_f32(1.0f / 5040.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    // 2^n, n in [-126, 128], as 2^(n - n/2) 2^(n/2): each factor a normal float.
    const int32x4_t ni = vcvtq_s32_f32(n);
    const int32x4_t nh = vshrq_n_s32(ni, 1), nl = vsubq_s32(ni, nh);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(nh, vdupq_n_s32(127)), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(nl, vdupq_n_s32(127)), 23));
    float32x4_t y = vmulq_f32(vmulq_f32(p, s1), s2);
    y = vbslq_f32(vcgtq_f32(x, vdupq_n_f32(NEON_EXP_HI)), vdupq_n_f32(__builtin_inff()), y);
    y = vbslq_f32(vcltq_f32(x, vdupq_n_f32(NEON_EXP_LO)), vdupq_n_f32(0.0f), y);
    return vbslq_f32(vceqq_f32(x, x), y, x);  // NaN in, NaN out
}

// x sigmoid(z) = x / (1 + exp(-z)): SiLU with z = x, and the tanh GELU with z = 2 sqrt(2/pi)
// (x + 0.044715 x^3), since 0.5 x (1 + tanh(t)) = x / (1 + exp(-2t)). Large |z| give x or +-0
// without cancellation.
CNX_INLINE float32x4_t neon_x_sigmoid(float32x4_t x, float32x4_t z) {
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), neon_exp(vnegq_f32(z))));
}

CNX_INLINE float32x4_t neon_gelu_tanh(float32x4_t x) {
    const float32x4_t x3 = vmulq_f32(vmulq_f32(x, x), x);
    const float32x4_t t = vfmaq_n_f32(x, x3, 0.044715f);
    return neon_x_sigmoid(x, vmulq_n_f32(t, 1.5957691216057308f));  // 2 sqrt(2 / pi)
}

// act(x) for one of the NEON_ACT_* codes (unknown codes: identity).
CNX_INLINE float32x4_t neon_act(float32x4_t x, int act) {
    switch (act) {
    case NEON_ACT_GELU: return neon_gelu(x);
    case NEON_ACT_GELU_TANH: return neon_gelu_tanh(x);
    case NEON_ACT_SILU: return neon_x_sigmoid(x, x);
    case NEON_ACT_GELU_QUADRATIC: return neon_gelu_quadratic(x);
    default: return x;
    }
}

// The first n (all when n >= 4, none when n <= 0) of 4 lanes of 32 bits (float or int32) from p,
// the rest zero; and back. The column tails.
CNX_INLINE float32x4_t neon_load_partial(const void *p, int64_t n) {
    if (n >= 4) return vld1q_f32((const float *)p);
    float t[4] = {0, 0, 0, 0};
    if (n > 0) memcpy(t, p, (size_t)n * 4);
    return vld1q_f32(t);
}

CNX_INLINE void neon_store_partial(void *p, float32x4_t v, int64_t n) {
    if (n >= 4) {
        vst1q_f32((float *)p, v);
        return;
    }
    float t[4];
    vst1q_f32(t, v);
    if (n > 0) memcpy(p, t, (size_t)n * 4);
}

#endif  // CNX_ARM64
#endif
