// Half-precision weights (cnx_half.h): conversions, packing, the scalar twins, and the run-time
// choice of path. The AVX-512 kernels are in fast_hgemm_avx512.c.
#include "cnx_half.h"
#include "cnx_cpu.h"
#include "cnx_fast.h"

#include "activation.h"
#include "hgemm_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#endif
#if defined(__aarch64__) && !defined(CNX_NO_SIMD)
#define CNX_AARCH64 1
#endif

#define PANEL CNX_HPANEL

static inline uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static inline float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// MARK: - Conversions

uint16_t cnx_bf16_from_f32(float x) {
    uint32_t u = bits_of(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN
    // Round to nearest even on the bits: adding 0x7FFF plus the kept part's lowest bit carries
    // exactly when the dropped half-word is above half, or at half with an odd kept part.
    // Denormals are linear in their bits, so the same rule rounds them; the largest finite values
    // carry into the infinity pattern.
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float cnx_f32_from_bf16(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t cnx_f16_from_f32(float x) {
    const uint32_t u = bits_of(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t ax = u & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));  // NaN
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7C00u);  // 65536 and up, infinity
    if (ax >= 0x38800000u) {
        // Normal in binary16 (2^-14 and up): rebias the exponent (127 -> 15) and round the 13
        // dropped bits to nearest even; 65520 and up carry into the infinity pattern.
        uint32_t v = ax - 0x38000000u;
        v += 0x0FFFu + ((v >> 13) & 1u);
        return (uint16_t)(sign | (v >> 13));
    }
    if (ax <= 0x33000000u) return sign;  // at most 2^-25: half the smallest denormal, ties to 0
    // A binary16 denormal, a multiple of 2^-24: |x| 2^24 (exact) rounded to an integer, nearest
    // even (the default rounding mode); 1024 is the smallest normal, which the bits then spell.
    const float scaled = float_of(ax) * 16777216.0f;
    return (uint16_t)(sign | (uint16_t)lrintf(scaled));
}

float cnx_f32_from_f16(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (e == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));  // inf, NaN
    if (e != 0) return float_of(sign | ((e + 112u) << 23) | (mant << 13));
    // Zero or denormal: mant 2^-24, exact in float.
    const float v = (float)mant * 5.9604644775390625e-08f;
    return sign ? -v : v;
}

void cnx_bf16_from_f32_n(const float *x, int64_t count, uint16_t *y) {
    for (int64_t i = 0; i < count; i++) y[i] = cnx_bf16_from_f32(x[i]);
}

void cnx_f32_from_bf16_n(const uint16_t *x, int64_t count, float *y) {
    for (int64_t i = 0; i < count; i++) y[i] = cnx_f32_from_bf16(x[i]);
}

void cnx_f16_from_f32_n(const float *x, int64_t count, uint16_t *y) {
    for (int64_t i = 0; i < count; i++) y[i] = cnx_f16_from_f32(x[i]);
}

void cnx_f32_from_f16_n(const uint16_t *x, int64_t count, float *y) {
    for (int64_t i = 0; i < count; i++) y[i] = cnx_f32_from_f16(x[i]);
}

// MARK: - Packing

static inline int64_t even_k(int64_t k) { return k + (k & 1); }

size_t cnx_hgemm_packed_b_halves(int64_t k, int64_t n) {
    if (k <= 0 || n <= 0) return 0;
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)even_k(k);
}

void cnx_hgemm_pack_b_bf16(const uint16_t *b, int64_t k, int64_t n, uint16_t *packed) {
    const int64_t kp2 = even_k(k), panels = (n + PANEL - 1) / PANEL;
    for (int64_t p = 0; p < panels; p++) {
        uint16_t *dst = packed + p * PANEL * kp2;
        for (int64_t q = 0; q < kp2 / 2; q++) {
            for (int64_t j = 0; j < PANEL; j++) {
                for (int64_t t = 0; t < 2; t++) {
                    const int64_t kk = 2 * q + t, col = p * PANEL + j;
                    dst[q * 2 * PANEL + 2 * j + t] = kk < k && col < n ? b[kk * n + col] : 0;
                }
            }
        }
    }
}

void cnx_hgemm_pack_b_f16(const uint16_t *b, int64_t k, int64_t n, uint16_t *packed) {
    const int64_t kp2 = even_k(k), panels = (n + PANEL - 1) / PANEL;
    for (int64_t p = 0; p < panels; p++) {
        uint16_t *dst = packed + p * PANEL * kp2;
        for (int64_t kk = 0; kk < kp2; kk++) {
            for (int64_t j = 0; j < PANEL; j++) {
                const int64_t col = p * PANEL + j;
                dst[kk * PANEL + j] = kk < k && col < n ? b[kk * n + col] : 0;
            }
        }
    }
}

// The weight (kk, j) of a packed B.
static inline uint16_t packed_bf16_at(const uint16_t *packed, int64_t kp2, int64_t kk, int64_t j) {
    return packed[(j / PANEL) * PANEL * kp2 + (kk / 2) * 2 * PANEL + 2 * (j % PANEL) + (kk & 1)];
}

static inline uint16_t packed_f16_at(const uint16_t *packed, int64_t kp2, int64_t kk, int64_t j) {
    return packed[(j / PANEL) * PANEL * kp2 + kk * PANEL + j % PANEL];
}

// MARK: - Twins

// The accumulator before the products: bias, plus the residual when no activation sits between.
static inline float acc_start(const float *bias, int act, const float *residual, int64_t ldr, int64_t i,
                              int64_t j) {
    float s = bias ? bias[j] : 0.0f;
    if (residual && !act) s = s + residual[i * ldr + j];
    return s;
}

static inline float acc_finish(float s, int act, const float *residual, int64_t ldr, int64_t i, int64_t j) {
    if (!act) return s;
    s = cnx_act_scalar(act, s);
    if (residual) s += residual[i * ldr + j];
    return s;
}

// The SIMD paths read the residual before writing C, row block by row block; when the residual
// is C itself, a twin must do the same: each output is computed from its own residual element
// before that element is overwritten, which a row-by-row, column-by-column loop guarantees.
void cnx_gemm_bf16_dot_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                           const uint16_t *packed_b, const float *bias, int act,
                           const float *residual, int64_t ldr, float *c, int64_t ldc) {
    act = cnx_act_normalise(act);
    const int64_t kp2 = even_k(k);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            float s = acc_start(bias, act, residual, ldr, i, j);
            for (int64_t q = 0; q < kp2 / 2; q++) {
                const float a0 = cnx_bf16_round_daz(a[i * lda + 2 * q]);
                const float a1 = 2 * q + 1 < k ? cnx_bf16_round_daz(a[i * lda + 2 * q + 1]) : 0.0f;
                const float w0 = cnx_ftz(cnx_f32_from_bf16(packed_bf16_at(packed_b, kp2, 2 * q, j)));
                const float w1 = cnx_ftz(cnx_f32_from_bf16(packed_bf16_at(packed_b, kp2, 2 * q + 1, j)));
                s = cnx_bf16_dot_pair(s, a0, a1, w0, w1);
            }
            c[i * ldc + j] = acc_finish(s, act, residual, ldr, i, j);
        }
    }
}

// The widened twins: float FMAs in k order over the weights widened to float.
static void wide_ref(int f16, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                     const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc) {
    act = cnx_act_normalise(act);
    const int64_t kp2 = even_k(k);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            float s = acc_start(bias, act, residual, ldr, i, j);
            for (int64_t kk = 0; kk < k; kk++) {
                const float w = f16 ? cnx_f32_from_f16(packed_f16_at(packed_b, kp2, kk, j))
                                    : cnx_f32_from_bf16(packed_bf16_at(packed_b, kp2, kk, j));
                s = fmaf(a[i * lda + kk], w, s);
            }
            c[i * ldc + j] = acc_finish(s, act, residual, ldr, i, j);
        }
    }
}

void cnx_gemm_bf16_wide_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const uint16_t *packed_b, const float *bias, int act,
                            const float *residual, int64_t ldr, float *c, int64_t ldc) {
    wide_ref(0, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

void cnx_gemm_f16_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const uint16_t *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    wide_ref(1, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

// MARK: - Paths

// The best path the hardware and the float kernels' path allow, before CNX_HPATH.
static cnx_hpath hardware_hpath(void) {
    const cnx_isa isa = cnx_isa_current();
    if (isa == CNX_ISA_SCALAR) return CNX_HPATH_SCALAR;
    if (isa == CNX_ISA_NEON) return (cnx_cpu_features() & CNX_CPU_BF16) ? CNX_HPATH_NEON_BF16 : CNX_HPATH_FLOAT;
    if (isa != CNX_ISA_AVX512) return CNX_HPATH_FLOAT;  // AVX2
    return (cnx_cpu_features() & CNX_CPU_AVX512_BF16) ? CNX_HPATH_AVX512_BF16 : CNX_HPATH_AVX512;
}

static _Atomic int g_hpath = -1;

// Path names by number (CNX_HPATH and cnx_hpath_name).
static const char *const HPATH_NAMES[] = {"scalar", "float", "avx512", "avx512bf16", "neonbf16"};

// A level at most `hw`; a level of the other architecture gives float.
static int clamp_hpath(int p, int hw) {
    if (p > hw) p = hw;
    if (hw == CNX_HPATH_NEON_BF16 && (p == CNX_HPATH_AVX512 || p == CNX_HPATH_AVX512_BF16)) p = CNX_HPATH_FLOAT;
    return p;
}

double cnx_hpath_bf16_dot_time_ratio(void) {
#if CNX_X86
    // The measured time ratio in thousandths, once per process; -1 before the measurement.
    static _Atomic int g_dot_ratio_milli = -1;
    if (!(cnx_cpu_features() & CNX_CPU_AVX512_BF16)) return 0;
    int v = atomic_load_explicit(&g_dot_ratio_milli, memory_order_relaxed);
    if (v < 0) {
        // Racing first calls each measure and store their own figure; any of them will do.
        v = (int)lround(cnx_bf16_dot_time_ratio_avx512bf16() * 1000.0);
        if (v < 1) v = 1;
        atomic_store_explicit(&g_dot_ratio_milli, v, memory_order_relaxed);
    }
    return (double)v / 1000.0;
#else
    return 0;
#endif
}

cnx_hpath cnx_hpath_available(void) { return hardware_hpath(); }

// The default among the available paths: the best, except that the widened AVX-512 kernel
// replaces the dot product where a vdpbf16ps (two multiply-adds a lane) takes more than twice
// an FMA's time (one), so multiplies slower. Measured: 4.3x on an Intel Xeon of family 6 model
// 207 (Emerald Rapids, no AMX exposed), where a float32 model then ran faster than a bf16 one;
// about 1x on AMD Zen 4.
static int default_hpath(int hw) {
    if (hw == CNX_HPATH_AVX512_BF16 && cnx_hpath_bf16_dot_time_ratio() > CNX_BF16_DOT_MAX_TIME_RATIO)
        return CNX_HPATH_AVX512;
    return hw;
}

cnx_hpath cnx_hpath_detect(void) {
    const int hw = (int)hardware_hpath();
    const char *env = getenv("CNX_HPATH");
    for (int p = 0; env && p <= hw; p++)
        if (strcmp(env, HPATH_NAMES[p]) == 0) return (cnx_hpath)clamp_hpath(p, hw);  // chosen
    return (cnx_hpath)default_hpath(hw);
}

cnx_hpath cnx_hpath_current(void) {
    int v = atomic_load_explicit(&g_hpath, memory_order_relaxed);
    if (v >= 0) return (cnx_hpath)v;
    // Racing first calls store the same value.
    v = (int)cnx_hpath_detect();
    atomic_store_explicit(&g_hpath, v, memory_order_relaxed);
    return (cnx_hpath)v;
}

void cnx_hpath_force(int path) {
    const int hw = (int)hardware_hpath();
    const int v = path < 0 ? (int)cnx_hpath_detect() : clamp_hpath(path, hw);
    atomic_store_explicit(&g_hpath, v, memory_order_relaxed);
}

const char *cnx_hpath_name(cnx_hpath path) {
    const int p = (int)path;
    return p >= 0 && p <= CNX_HPATH_NEON_BF16 ? HPATH_NAMES[p] : "unknown";
}

// MARK: - Dispatch

// The SIMD kernel of `kind` when the path has one, else its twin (the widened one for bf16:
// without AVX512_BF16 there is no dot product to emulate; on the float path the runtime does not
// call here, having widened the weights at load).
static void hgemm(int kind, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const uint16_t *packed_b,
                  const float *bias, int act, const float *residual, int64_t ldr, float *c, int64_t ldc) {
    act = cnx_act_normalise(act);
    const cnx_hpath path = cnx_hpath_current();
#if CNX_X86
    if (path == CNX_HPATH_AVX512 || path == CNX_HPATH_AVX512_BF16) {
        if (kind == CNX_HK_BF16_DOT && path != CNX_HPATH_AVX512_BF16) kind = CNX_HK_BF16_WIDE;
        cnx_hgemm_avx512(kind, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
#endif
#if CNX_AARCH64
    if (path == CNX_HPATH_NEON_BF16 && (kind == CNX_HK_BF16_DOT || kind == CNX_HK_F16)) {
        cnx_hgemm_neon(kind, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
#endif
    (void)path;
    wide_ref(kind == CNX_HK_F16, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

void cnx_gemm_bf16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const uint16_t *packed_b, const float *bias, int act, const float *residual,
                   int64_t ldr, float *c, int64_t ldc) {
    hgemm(CNX_HK_BF16_DOT, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

void cnx_gemm_f16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const uint16_t *packed_b, const float *bias, int act, const float *residual,
                  int64_t ldr, float *c, int64_t ldc) {
    hgemm(CNX_HK_F16, m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
}

// MARK: - Activations already in bfloat16

void cnx_round_bf16_ref(const float *x, int64_t count, uint16_t *y) {
    for (int64_t i = 0; i < count; i++) y[i] = cnx_bf16_from_f32(cnx_ftz(x[i]));
}

void cnx_round_bf16(const float *x, int64_t count, uint16_t *y) {
#if CNX_X86
    if (cnx_hpath_current() == CNX_HPATH_AVX512_BF16) {
        cnx_round_bf16_avx512bf16(x, count, y);
        return;
    }
#endif
    cnx_round_bf16_ref(x, count, y);
}

// Row by row: A's row widened (exact), the dot twin on it, then the output rounded when bf16.
// Row by row keeps a residual that is C itself correct (each row reads its own residual first).
void cnx_gemm_bf16_a16_ref(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                           const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16,
                           int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    float *row = malloc((size_t)(k > 0 ? k : 1) * sizeof(float));
    float *out = c16 ? malloc((size_t)n * sizeof(float)) : NULL;
    if (!row || (c16 && !out)) abort();
    for (int64_t i = 0; i < m; i++) {
        cnx_f32_from_bf16_n(a + i * lda, k, row);
        cnx_gemm_bf16_dot_ref(1, n, k, row, k, packed_b, bias, act, residual ? residual + i * ldr : NULL, ldr,
                              c16 ? out : c + i * ldc, ldc);
        if (c16) cnx_round_bf16_ref(out, n, c16 + i * ldc);
    }
    free(row);
    free(out);
}

void cnx_gemm_bf16_a16(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *packed_b,
                       const float *bias, int act, const float *residual, int64_t ldr, float *c, uint16_t *c16, int64_t ldc) {
    act = cnx_act_normalise(act);
#if CNX_X86
    if (cnx_hpath_current() == CNX_HPATH_AVX512_BF16 && k % 2 == 0 && lda % 2 == 0) {
        cnx_hgemm_a16_avx512bf16(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, c16, ldc);
        return;
    }
#endif
    cnx_gemm_bf16_a16_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, c16, ldc);
}
