// The activations of the fast kernels (CNX_ACT_* in cnx_fast.h), shared by every file that applies
// one: the scalar specification (the `_ref` functions and the portable paths) and the vectorised
// forms of the AVX-512 and AVX2 paths (float GEMM epilogue, int8 epilogues, elementwise). Private
// to Sources/CKernels: not API.
//
// Exact GELU, x Phi(x). Scalar: 0.5 x (1 + erff(x / sqrt 2)). Vector: max(x, 0) - |x| Q(|x|) with
// Q(a) = Phi(-a) piecewise polynomial on [0, 6) (dropped past 6, where |x| Q(|x|) < 7e-9): see
// the tables below; within 4e-8 of GELU beyond the final rounding.
//
// tanh GELU and SiLU are both x sigmoid(t), using 0.5 (1 + tanh(z)) = 1 / (1 + exp(-2 z)):
//     tanh GELU: t = 2 sqrt(2/pi) (x + 0.044715 x^3) = x (C1 + C2 x^2)      SiLU: t = x
//     y = x / (1 + exp(-t))
// This form has no 1 + tanh cancellation (the result keeps its relative accuracy where it is tiny,
// x << 0) and no special cases: exp(-t) = inf gives x / inf = -0, exp(-t) = 0 gives x, NaN stays
// NaN. For x = -inf it gives NaN, as PyTorch's x * sigmoid(x) and 0.5 x (1 + tanh(.)) do.
// t is computed the same way, in float with separate roundings (x2 = x x; u = C2 x2; u = u + C1;
// t = x u), on every path, so the paths differ only in exp: libm's expf in the scalar form, in the
// vector forms exp512 / exp256 below (within 1 ulp: 2^-26 relative polynomial error plus the
// roundings; inputs clamped to [-104, 104], outside which float exp is 0 or inf anyway), then
// 1 + e and one correctly rounded division. Vector results are within 4 ulp of the scalar ones
// where |y| >= 1e-30 (accuracy figures: cnx_fast.h, cnx_activation_inplace_f32).
#ifndef CNX_ACTIVATION_H
#define CNX_ACTIVATION_H

#include "cnx_fast.h"

#include <math.h>

#define CNX_INV_SQRT2 0.70710678118654752f
// 2 sqrt(2 / pi) and 2 sqrt(2 / pi) 0.044715, rounded to float.
#define CNX_TANH_C1 1.5957691216057308f
#define CNX_TANH_C2 0.0713548162726002527f

/// Runs BODY(ACT) with ACT the compile-time CNX_ACT_* constant equal to the run-time `act` (acts
/// outside 1..3: CNX_ACT_NONE), so that each activation gets its own instantiation of an inline
/// kernel. BODY is a function-like macro of the call site.
#define CNX_ACT_DISPATCH(act, BODY)                                                              \
    do {                                                                                         \
        switch (act) {                                                                           \
        case CNX_ACT_GELU: BODY(CNX_ACT_GELU); break;                                            \
        case CNX_ACT_GELU_TANH: BODY(CNX_ACT_GELU_TANH); break;                                  \
        case CNX_ACT_SILU: BODY(CNX_ACT_SILU); break;                                            \
        case CNX_ACT_GELU_QUADRATIC: BODY(CNX_ACT_GELU_QUADRATIC); break;                        \
        default: BODY(CNX_ACT_NONE); break;                                                      \
        }                                                                                        \
    } while (0)

/// Acts outside 1..4 are none.
static inline int cnx_act_normalise(int act) {
    return act == CNX_ACT_GELU || act == CNX_ACT_GELU_TANH || act == CNX_ACT_SILU || act == CNX_ACT_GELU_QUADRATIC
               ? act
               : CNX_ACT_NONE;
}

/// The argument of the sigmoid of tanh GELU, in the order every path uses.
static inline float cnx_tanh_gelu_t(float x) {
    float x2 = x * x;
    float u = x2 * CNX_TANH_C2;
    u = u + CNX_TANH_C1;
    return x * u;
}

#include "gelu_table.h"

/// The quadratic GELU (CNX_ACT_GELU_QUADRATIC), the specification every path computes bit for
/// bit: s = |x| 32/6 rounded once; past the table (s >= 32, or NaN) max(x, 0); else on interval
/// i = floor(s) at u = s - i (exact), P = (c2 u + c1) u + c0 in two fused multiply-adds, and
/// max(x, 0) - |x| P in one more. max(x, 0) is x for NaN and for -0 (as vmaxps(0, x)).
static inline float cnx_gelu_quadratic_scalar(float x) {
    const float a = fabsf(x), s = a * (32.0f / 6.0f);
    const float relu = x > 0.0f || !(x < 0.0f) ? x : 0.0f;
    if (!(s < 32.0f)) return relu;
    const int i = (int)s;
    const float u = s - (float)i;
    float p = fmaf(cnx_gelu_q32d2[2][i], u, cnx_gelu_q32d2[1][i]);
    p = fmaf(p, u, cnx_gelu_q32d2[0][i]);
    return fmaf(-a, p, relu);
}

/// The scalar specification of every activation.
static inline float cnx_act_scalar(int act, float x) {
    switch (act) {
    case CNX_ACT_GELU: return 0.5f * x * (1.0f + erff(x * CNX_INV_SQRT2));
    case CNX_ACT_GELU_TANH: return x / (1.0f + expf(-cnx_tanh_gelu_t(x)));
    case CNX_ACT_SILU: return x / (1.0f + expf(-x));
    case CNX_ACT_GELU_QUADRATIC: return cnx_gelu_quadratic_scalar(x);
    default: return x;
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#define CNX_ACT_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define CNX_ACT_T256 __attribute__((target("avx2,fma")))
#define CNX_ACT_INLINE static inline __attribute__((always_inline))

// MARK: - Exact GELU tables

// Q on [0, 6) in n equal intervals, on each a polynomial in the position u in [0, 1) inside the
// interval, fitted (minimax on a |P(u) - Q(a)|, by reweighted least squares) and rounded to
// float. A lane permute fetches each lane's coefficients: row j of a table holds the
// coefficients of u^j, one column per interval.
//   AVX-512: 32 intervals (a two-register zmm permute), degree 4.  AVX2: 8 intervals (ymm permute),
//   degree 6. (NEON: 16 intervals, degree 5.)
#define CNX_GELU_AMAX 6.0f

// The tables are gelu_table.c's (gelu_table.h, included above), made by scripts/gelu-table.py.

static const float CNX_GELU_Q8[7][8] __attribute__((aligned(32), unused)) = {
    {5.000000000e-01f, 2.266273350e-01f, 6.680720299e-02f, 1.222447678e-02f, 1.349897939e-03f, 8.841690578e-05f, 3.397613000e-06f, 7.604597130e-08f},
    {-2.992078662e-01f, -2.258513868e-01f, -9.713809937e-02f, -2.380514331e-02f, -3.323879791e-03f, -2.644097258e-04f, -1.198178597e-05f, -3.092642089e-07f},
    {1.924149910e-05f, 6.349641085e-02f, 5.463835225e-02f, 2.009163052e-02f, 3.739341162e-03f, 3.712841426e-04f, 2.013012636e-05f, 6.033505997e-07f},
    {2.793110162e-02f, 9.402290918e-03f, -1.136922929e-02f, -9.104431607e-03f, -2.493218053e-03f, -3.202434746e-04f, -2.101216887e-05f, -7.310265460e-07f},
    {3.578190226e-04f, -7.629821543e-03f, -1.973715378e-03f, 2.051529242e-03f, 1.054482418e-03f, 1.823462517e-04f, 1.446083934e-05f, 5.759105761e-07f},
    {-2.928650705e-03f, 5.405119155e-04f, 1.500571263e-03f, -5.386496559e-05f, -2.717253810e-04f, -6.520682655e-05f, -6.121121714e-06f, -2.719035592e-07f},
    {4.557005304e-04f, 2.218740847e-04f, -2.406072017e-04f, -5.430297460e-05f, 3.351913256e-05f, 1.121070636e-05f, 1.202599492e-06f, 5.787691393e-08f},
};

// MARK: - exp

// exp(v) = 2^n e^r, n = round(v log2 e), r = v - n ln 2 (two FMA steps with ln 2 split in a float
// and its remainder: r is exact to far below an ulp), |r| <= ln 2 / 2. e^r = 1 + r + r^2 P(r),
// P of degree 4 fitted (reweighted least squares, minimax in relative error of e^r) and rounded
// to float: relative error 3.9e-9 on the interval. 2^n is applied in one rounding (scalef on
// AVX-512; two exact power-of-two factors on AVX2, the second multiply rounding once), so both
// paths give the same bits, with gradual underflow. v is first clamped to [-104, 104] (past which
// float exp is 0 or inf either way); min/max return their second operand for NaN, so NaN stays.
#define CNX_EXP_LOG2E 1.44269504088896341f
#define CNX_EXP_LN2_HI 0.693147182464599609f   // ln 2 rounded to float
#define CNX_EXP_LN2_LO -1.90465432314823596e-09f  // ln 2 - CNX_EXP_LN2_HI
#define CNX_EXP_P0 4.999999404e-01f
#define CNX_EXP_P1 1.666652113e-01f
#define CNX_EXP_P2 4.166838899e-02f
#define CNX_EXP_P3 8.368703537e-03f
#define CNX_EXP_P4 1.381458133e-03f
#define CNX_EXP_VMAX 104.0f

// MARK: - AVX-512

/// Coefficient j of each lane's interval (idx: the interval, low 5 bits read) from a 32-interval table.
CNX_ACT_INLINE CNX_ACT_T512 __m512 cnx_gelu512_coef(const float (*table)[32], int j, __m512i idx) {
    return _mm512_permutex2var_ps(_mm512_load_ps(table[j]), idx, _mm512_load_ps(table[j] + 16));
}

/// GELU of N vectors from a 32-interval table of degree D (rows 0..D), each step over all N
/// before the next: the N dependency chains then sit side by side in the scheduler instead of
/// one after another.
CNX_ACT_INLINE CNX_ACT_T512 void cnx_gelu512_table_n(const int N, __m512 *x, const int D, const float (*table)[32]) {
    __m512 a[4], s[4], u[4], p[4];
    __m512i idx[4];
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        a[v] = _mm512_abs_ps(x[v]);
        s[v] = _mm512_mul_ps(a[v], _mm512_set1_ps(32.0f / CNX_GELU_AMAX));  // interval position
    }
    // u = s - floor(s) in one exact vreduceps; the permutes read only the index's low 5 bits, so
    // s >= 32 (|x| >= 6, or s rounded up to 32 just below it, where a Q(a) < 1e-8) and NaN (index
    // 0x80000000) need no clamp: those lanes take relu below.
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        u[v] = _mm512_reduce_ps(s[v], _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        idx[v] = _mm512_cvttps_epi32(s[v]);
        p[v] = cnx_gelu512_coef(table, D, idx[v]);
    }
    for (int j = D - 1; j >= 0; j--)
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++) p[v] = _mm512_fmadd_ps(p[v], u[v], cnx_gelu512_coef(table, j, idx[v]));
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        const __m512 relu = _mm512_max_ps(_mm512_setzero_ps(), x[v]);  // NaN stays NaN (second operand)
        const __mmask16 near = _mm512_cmp_ps_mask(s[v], _mm512_set1_ps(32.0f), _CMP_LT_OQ);
        x[v] = _mm512_mask3_fnmadd_ps(a[v], p[v], relu, near);  // relu - a p where |x| < 6, else relu
    }
}

/// Exact GELU of N vectors (degree 4: within 4e-8).
CNX_ACT_INLINE CNX_ACT_T512 void cnx_gelu512_n(const int N, __m512 *x) { cnx_gelu512_table_n(N, x, 4, cnx_gelu_q32); }

/// The quadratic GELU of N vectors (CNX_ACT_GELU_QUADRATIC: cnx_gelu_quadratic_scalar's bits).
CNX_ACT_INLINE CNX_ACT_T512 void cnx_gelu512_quadratic_n(const int N, __m512 *x) {
    cnx_gelu512_table_n(N, x, 2, cnx_gelu_q32d2);
}

/// x = x / (1 + exp(-t(x))) for N vectors, t(x) = x (SiLU) or cnx_tanh_gelu_t(x) (TANH).
CNX_ACT_INLINE CNX_ACT_T512 void cnx_xsigmoid512_n(const int TANH, const int N, __m512 *x) {
    __m512 v[4], n[4], r[4], p[4];
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        __m512 t = x[i];
        if (TANH) {
            const __m512 u = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(x[i], x[i]), _mm512_set1_ps(CNX_TANH_C2)),
                                           _mm512_set1_ps(CNX_TANH_C1));
            t = _mm512_mul_ps(x[i], u);
        }
        // v = clamp(-t, -104, 104), NaN kept.
        v[i] = _mm512_max_ps(_mm512_set1_ps(-CNX_EXP_VMAX),
                             _mm512_min_ps(_mm512_set1_ps(CNX_EXP_VMAX), _mm512_sub_ps(_mm512_setzero_ps(), t)));
        n[i] = _mm512_roundscale_ps(_mm512_mul_ps(v[i], _mm512_set1_ps(CNX_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        r[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(CNX_EXP_LN2_HI), v[i]);
        r[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(CNX_EXP_LN2_LO), r[i]);
        p[i] = _mm512_set1_ps(CNX_EXP_P4);
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(CNX_EXP_P3));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(CNX_EXP_P2));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(CNX_EXP_P1));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm512_fmadd_ps(p[i], r[i], _mm512_set1_ps(CNX_EXP_P0));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        // e^r = 1 + (r + r^2 P), then 2^n.
        p[i] = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(p[i], _mm512_mul_ps(r[i], r[i]), r[i]));
        const __m512 e = _mm512_scalef_ps(p[i], n[i]);
        x[i] = _mm512_div_ps(x[i], _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    }
}

/// The activation ACT (a CNX_ACT_* constant) of N <= 4 vectors in place.
CNX_ACT_INLINE CNX_ACT_T512 void cnx_act512_n(const int ACT, const int N, __m512 *x) {
    if (ACT == CNX_ACT_GELU) cnx_gelu512_n(N, x);
    else if (ACT == CNX_ACT_GELU_QUADRATIC) cnx_gelu512_quadratic_n(N, x);
    else if (ACT == CNX_ACT_GELU_TANH) cnx_xsigmoid512_n(1, N, x);
    else if (ACT == CNX_ACT_SILU) cnx_xsigmoid512_n(0, N, x);
}

// MARK: - AVX2

CNX_ACT_INLINE CNX_ACT_T256 void cnx_gelu256_n(const int N, __m256 *x) {
    __m256 a[4], s[4], f[4], u[4], p[4];
    __m256i idx[4];
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        a[v] = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x[v]);
        s[v] = _mm256_min_ps(_mm256_mul_ps(a[v], _mm256_set1_ps(8.0f / CNX_GELU_AMAX)), _mm256_set1_ps(7.99999f));
    }
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) f[v] = _mm256_round_ps(s[v], _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        idx[v] = _mm256_cvttps_epi32(f[v]);
        u[v] = _mm256_sub_ps(s[v], f[v]);
        p[v] = _mm256_permutevar8x32_ps(_mm256_load_ps(CNX_GELU_Q8[6]), idx[v]);
    }
    for (int j = 5; j >= 0; j--)
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++)
            p[v] = _mm256_fmadd_ps(p[v], u[v], _mm256_permutevar8x32_ps(_mm256_load_ps(CNX_GELU_Q8[j]), idx[v]));
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        const __m256 relu = _mm256_max_ps(_mm256_setzero_ps(), x[v]);
        const __m256 near = _mm256_cmp_ps(a[v], _mm256_set1_ps(CNX_GELU_AMAX), _CMP_LT_OQ);
        x[v] = _mm256_sub_ps(relu, _mm256_and_ps(near, _mm256_mul_ps(a[v], p[v])));
    }
}

/// Coefficient row j of the quadratic GELU's table (32 floats) at each lane's interval: the four
/// 8-entry quarters each permuted by the index's low 3 bits, then chosen by bits 3 and 4 (lo3,
/// hi4: those bits moved to the sign, which blendv reads). No gathers: they cost several times this.
CNX_ACT_INLINE CNX_ACT_T256 __m256 cnx_gelu256_quadratic_coef(int j, __m256i idx, __m256 bit3, __m256 bit4) {
    const float *row = cnx_gelu_q32d2[j];
    const __m256 q0 = _mm256_permutevar8x32_ps(_mm256_load_ps(row), idx);
    const __m256 q1 = _mm256_permutevar8x32_ps(_mm256_load_ps(row + 8), idx);
    const __m256 q2 = _mm256_permutevar8x32_ps(_mm256_load_ps(row + 16), idx);
    const __m256 q3 = _mm256_permutevar8x32_ps(_mm256_load_ps(row + 24), idx);
    return _mm256_blendv_ps(_mm256_blendv_ps(q0, q1, bit3), _mm256_blendv_ps(q2, q3, bit3), bit4);
}

/// The quadratic GELU of N vectors (cnx_gelu_quadratic_scalar's bits).
CNX_ACT_INLINE CNX_ACT_T256 void cnx_gelu256_quadratic_n(const int N, __m256 *x) {
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x[v]);
        const __m256 s = _mm256_mul_ps(a, _mm256_set1_ps(32.0f / CNX_GELU_AMAX));
        const __m256 f = _mm256_round_ps(s, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m256i idx = _mm256_cvttps_epi32(f);  // lanes past the table (or NaN) take max(x, 0) below
        const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)), bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
        const __m256 u = _mm256_sub_ps(s, f);
        __m256 p = _mm256_fmadd_ps(cnx_gelu256_quadratic_coef(2, idx, bit3, bit4), u, cnx_gelu256_quadratic_coef(1, idx, bit3, bit4));
        p = _mm256_fmadd_ps(p, u, cnx_gelu256_quadratic_coef(0, idx, bit3, bit4));
        const __m256 relu = _mm256_max_ps(_mm256_setzero_ps(), x[v]);  // NaN stays NaN (second operand)
        const __m256 near = _mm256_cmp_ps(s, _mm256_set1_ps(32.0f), _CMP_LT_OQ);
        x[v] = _mm256_blendv_ps(relu, _mm256_fnmadd_ps(a, p, relu), near);
    }
}

CNX_ACT_INLINE CNX_ACT_T256 void cnx_xsigmoid256_n(const int TANH, const int N, __m256 *x) {
    __m256 v[4], n[4], r[4], p[4];
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        __m256 t = x[i];
        if (TANH) {
            const __m256 u = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(x[i], x[i]), _mm256_set1_ps(CNX_TANH_C2)),
                                           _mm256_set1_ps(CNX_TANH_C1));
            t = _mm256_mul_ps(x[i], u);
        }
        v[i] = _mm256_max_ps(_mm256_set1_ps(-CNX_EXP_VMAX),
                             _mm256_min_ps(_mm256_set1_ps(CNX_EXP_VMAX), _mm256_sub_ps(_mm256_setzero_ps(), t)));
        n[i] = _mm256_round_ps(_mm256_mul_ps(v[i], _mm256_set1_ps(CNX_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        r[i] = _mm256_fnmadd_ps(n[i], _mm256_set1_ps(CNX_EXP_LN2_HI), v[i]);
        r[i] = _mm256_fnmadd_ps(n[i], _mm256_set1_ps(CNX_EXP_LN2_LO), r[i]);
        p[i] = _mm256_set1_ps(CNX_EXP_P4);
    }
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(CNX_EXP_P3));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(CNX_EXP_P2));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(CNX_EXP_P1));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(CNX_EXP_P0));
#pragma clang loop unroll(full)
    for (int i = 0; i < N; i++) {
        p[i] = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(p[i], _mm256_mul_ps(r[i], r[i]), r[i]));
        // 2^n as 2^h 2^(n - h), h = n >> 1: both factors normal for |n| <= 150, so p 2^h is exact
        // and the second multiply is the one rounding (gradual underflow included), as scalef.
        // A NaN n gives garbage factors, but p is NaN then.
        const __m256i ni = _mm256_cvtps_epi32(n[i]);
        const __m256i h = _mm256_srai_epi32(ni, 1), l = _mm256_sub_epi32(ni, h);
        const __m256 fh = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
        const __m256 fl = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(l, _mm256_set1_epi32(127)), 23));
        const __m256 e = _mm256_mul_ps(_mm256_mul_ps(p[i], fh), fl);
        x[i] = _mm256_div_ps(x[i], _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
}

CNX_ACT_INLINE CNX_ACT_T256 void cnx_act256_n(const int ACT, const int N, __m256 *x) {
    if (ACT == CNX_ACT_GELU) cnx_gelu256_n(N, x);
    else if (ACT == CNX_ACT_GELU_QUADRATIC) cnx_gelu256_quadratic_n(N, x);
    else if (ACT == CNX_ACT_GELU_TANH) cnx_xsigmoid256_n(1, N, x);
    else if (ACT == CNX_ACT_SILU) cnx_xsigmoid256_n(0, N, x);
}

#endif  // x86 SIMD

#endif
