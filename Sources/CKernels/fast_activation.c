// Elementwise activations in place (cnx_activation_inplace_f32, cnx_gelu_inplace_f32): the forms
// of activation.h over an array, two vectors per step, the tail under a mask.
#include "cnx_fast.h"

#include "activation.h"
#include "neon_internal.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#endif

void cnx_activation_inplace_f32_ref(float *x, int64_t count, int act) {
    act = cnx_act_normalise(act);
    if (act == CNX_ACT_NONE) return;
    for (int64_t i = 0; i < count; i++) x[i] = cnx_act_scalar(act, x[i]);
}

void cnx_gelu_inplace_f32_ref(float *x, int64_t count) {
    cnx_activation_inplace_f32_ref(x, count, CNX_ACT_GELU);
}

#if CNX_X86

#define T512 CNX_ACT_T512
#define T256 CNX_ACT_T256
#define INLINE CNX_ACT_INLINE

INLINE T512 void act_inplace512(const int ACT, float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512 v[2] = {_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16)};
        cnx_act512_n(ACT, 2, v);
        _mm512_storeu_ps(x + i, v[0]);
        _mm512_storeu_ps(x + i + 16, v[1]);
    }
    for (; i < count; i += 16) {
        const int64_t left = count - i;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        cnx_act512_n(ACT, 1, &v);
        _mm512_mask_storeu_ps(x + i, m, v);
    }
}

static T512 void activation_avx512(float *x, int64_t count, int act) {
#define BODY(ACT) act_inplace512(ACT, x, count)
    CNX_ACT_DISPATCH(act, BODY);
#undef BODY
}

INLINE T256 __m256i mask8(int64_t valid) {
    const int v = valid > 8 ? 8 : (int)valid;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

INLINE T256 void act_inplace256(const int ACT, float *x, int64_t count) {
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256 v[2] = {_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i + 8)};
        cnx_act256_n(ACT, 2, v);
        _mm256_storeu_ps(x + i, v[0]);
        _mm256_storeu_ps(x + i + 8, v[1]);
    }
    for (; i < count; i += 8) {
        const __m256i m = mask8(count - i);
        __m256 v = _mm256_maskload_ps(x + i, m);
        cnx_act256_n(ACT, 1, &v);
        _mm256_maskstore_ps(x + i, m, v);
    }
}

static T256 void activation_avx2(float *x, int64_t count, int act) {
#define BODY(ACT) act_inplace256(ACT, x, count)
    CNX_ACT_DISPATCH(act, BODY);
#undef BODY
}

#endif  // CNX_X86

void cnx_activation_inplace_f32(float *x, int64_t count, int act) {
    act = cnx_act_normalise(act);
    if (act == CNX_ACT_NONE || count <= 0) return;
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512: activation_avx512(x, count, act); return;
    case CNX_ISA_AVX2: activation_avx2(x, count, act); return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_activation_inplace_f32_neon(x, count, act); return;
#endif
    default: cnx_activation_inplace_f32_ref(x, count, act); return;
    }
}

void cnx_gelu_inplace_f32(float *x, int64_t count) { cnx_activation_inplace_f32(x, count, CNX_ACT_GELU); }
