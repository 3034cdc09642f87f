// Int8 pointwise kernels: path detection, weight packing, the scalar reference twins, the portable
// C path and the public entry points that dispatch to fast_qgemm_avx512.c and fast_qgemm_avx2.c.
// The arithmetic is specified in cnx_qgemm.h.
#define CNX_QGEMM_INTERNAL
#include "cnx_qgemm.h"
#include "neon_internal.h"

#include "activation.h"
#include "cnx_cpu.h"
#include "cnx_qref.h"
#include "quantize_u8.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#endif
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PANEL CNX_QGEMM_PANEL

// MARK: - Path detection (the CPU's features from cnx_cpu.h, lowered by CNX_ISA)

// Bit i set: path i is possible with features f.
static unsigned paths_of(unsigned f) {
    unsigned paths = 1u << CNX_QISA_SCALAR;
    if (f & CNX_CPU_AVX2) paths |= 1u << CNX_QISA_AVX2;
    if ((f & CNX_CPU_AVX2) && (f & CNX_CPU_AVX_VNNI)) paths |= 1u << CNX_QISA_AVX_VNNI;
    if ((f & CNX_CPU_AVX512) && (f & CNX_CPU_AVX512_VNNI)) paths |= 1u << CNX_QISA_AVX512_VNNI;
    if (f & CNX_CPU_NEON) paths |= 1u << CNX_QISA_NEON;
    if ((f & CNX_CPU_NEON) && (f & CNX_CPU_DOTPROD)) paths |= 1u << CNX_QISA_DOTPROD;
    if ((f & CNX_CPU_NEON) && (f & CNX_CPU_I8MM)) paths |= 1u << CNX_QISA_I8MM;
    return paths;
}

// The best path of a set: the highest-numbered one (on each architecture the paths are
// numbered from slowest to fastest).
static cnx_qisa best_of(unsigned paths) {
    for (int p = CNX_QISA_LAST; p > 0; p--)
        if (paths & (1u << p)) return (cnx_qisa)p;
    return CNX_QISA_SCALAR;
}

static _Atomic int g_active = -1;  // the path in use; -1 = not chosen yet

static unsigned paths_cached(void) { return paths_of(cnx_cpu_hardware()); }

// The best supported path at or below `want`.
static cnx_qisa clamp_path(int want) {
    if (want > CNX_QISA_LAST) want = CNX_QISA_LAST;
    return best_of(paths_cached() & ((2u << want) - 1));
}

int cnx_qisa_supported(cnx_qisa isa) {
    if ((int)isa < 0 || (int)isa > CNX_QISA_LAST) return 0;
    return (paths_cached() >> isa) & 1;
}

cnx_qisa cnx_qisa_detect(void) { return best_of(paths_of(cnx_cpu_features())); }

cnx_qisa cnx_qisa_current(void) {
    int v = atomic_load_explicit(&g_active, memory_order_relaxed);
    if (v < 0) {
        // Racing first calls compute the same value, so a plain store is enough.
        v = (int)cnx_qisa_detect();
        atomic_store_explicit(&g_active, v, memory_order_relaxed);
    }
    return (cnx_qisa)v;
}

void cnx_qisa_force(int isa) {
    const int v = isa < 0 ? (int)cnx_qisa_detect() : (int)clamp_path(isa);
    atomic_store_explicit(&g_active, v, memory_order_relaxed);
}

const char *cnx_qisa_name(cnx_qisa isa) {
    switch (isa) {
    case CNX_QISA_SCALAR: return "scalar";
    case CNX_QISA_AVX2: return "avx2";
    case CNX_QISA_AVX_VNNI: return "avxvnni";
    case CNX_QISA_AVX512_VNNI: return "avx512vnni";
    case CNX_QISA_NEON: return "neon";
    case CNX_QISA_DOTPROD: return "dotprod";
    case CNX_QISA_I8MM: return "i8mm";
    }
    return "unknown";
}

// MARK: - Packing

static int64_t panels_of(int64_t n) { return n > 0 ? (n + PANEL - 1) / PANEL : 0; }
static int64_t groups_of(int64_t k) { return k > 0 ? (k + 3) / 4 : 0; }

size_t cnx_qgemm_packed_b_bytes(int64_t k, int64_t n) {
    const int64_t np = panels_of(n);
    return (size_t)np * (size_t)groups_of(k) * 64 + (size_t)np * PANEL * sizeof(int32_t);
}

const int32_t *cnx_qgemm_packed_col_sums(const void *packed, int64_t k, int64_t n) {
    return (const int32_t *)((const uint8_t *)packed + (size_t)panels_of(n) * (size_t)groups_of(k) * 64);
}

void cnx_qgemm_col_sums(const int8_t *b, int64_t k, int64_t n, int32_t *out) {
    for (int64_t j = 0; j < n; j++) out[j] = 0;
    for (int64_t kk = 0; kk < k; kk++)
        for (int64_t j = 0; j < n; j++) out[j] += b[kk * n + j];
}

void cnx_qgemm_pack_b(const int8_t *b, int64_t k, int64_t n, void *packed) {
    const int64_t np = panels_of(n), kq = groups_of(k);
    int8_t *dst = (int8_t *)packed;
    for (int64_t p = 0; p < np; p++) {
        for (int64_t g = 0; g < kq; g++) {
            int8_t *grp = dst + (p * kq + g) * 64;
            for (int jj = 0; jj < PANEL; jj++) {
                const int64_t j = p * PANEL + jj;
                for (int t = 0; t < 4; t++) {
                    const int64_t kk = 4 * g + t;
                    grp[jj * 4 + t] = (j < n && kk < k) ? b[kk * n + j] : 0;
                }
            }
        }
    }
    int32_t *sums = (int32_t *)(dst + np * kq * 64);
    for (int64_t j = 0; j < np * PANEL; j++) sums[j] = 0;
    if (n > 0) cnx_qgemm_col_sums(b, k, n, sums);
}

// MARK: - Reference arithmetic (the specification; also the portable path)

// B[kk][j] from the packed form.
static inline int32_t packed_at(const int8_t *pb, int64_t kq, int64_t kk, int64_t j) {
    return pb[((j / PANEL) * kq + kk / 4) * 64 + (j % PANEL) * 4 + kk % 4];
}

// sum_k A[i][k] B[k][j], wrapping mod 2^32 as vpdpbusd does.
static inline int32_t dot_ref(const uint8_t *arow, const int8_t *pb, int64_t kq, int64_t k, int64_t j) {
    uint32_t s = 0;
    for (int64_t kk = 0; kk < k; kk++) s += (uint32_t)((int32_t)arow[kk] * packed_at(pb, kq, kk, j));
    return (int32_t)s;
}

// The dequantized value y of one output (cnx_qgemm.h). Separate statements: no FMA contraction.
static inline float epilogue_value(int32_t acc, const cnx_qjob *e, int64_t j) {
    const uint32_t corr = (uint32_t)e->a_zero * (uint32_t)(e->colsum ? e->colsum[j] : 0);
    const float s = e->w_scale ? e->a_scale * e->w_scale[j] : e->a_scale;
    float y = (float)(int32_t)((uint32_t)acc - corr);
    y = y * s;
    y = y + (e->bias ? e->bias[j] : 0.0f);
    y = cnx_act_scalar(e->act, y);
    return y;
}

// Writes the output of (i, j) for job e from the accumulator value.
static inline void emit_ref(int32_t acc, const cnx_qjob *e, int64_t i, int64_t j) {
    switch (e->mode) {
    case CNX_QOUT_S32:
        ((int32_t *)e->out)[i * e->ldo + j] = acc;
        return;
    case CNX_QOUT_F32: {
        float y = epilogue_value(acc, e, j);
        if (e->residual) y = e->residual[i * e->ldr + j] + y;
        ((float *)e->out)[i * e->ldo + j] = y;
        return;
    }
    default:
        ((uint8_t *)e->out)[i * e->ldo + j] = cnx_quantize_u8_one(epilogue_value(acc, e, j), e->o_inv, e->o_zero);
        return;
    }
}

static void gemm_ref(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                     const void *packed_b, const cnx_qjob *e) {
    const int8_t *pb = (const int8_t *)packed_b;
    const int64_t kq = groups_of(k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) emit_ref(dot_ref(a + i * lda, pb, kq, k, j), e, i, j);
}

// The portable path: the reference arithmetic in the packed order (per row, per 16-column panel,
// groups of 4 k in sequence), which compilers vectorise for the baseline ISA.
static void gemm_portable(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                          const void *packed_b, const cnx_qjob *e) {
    const int8_t *pb = (const int8_t *)packed_b;
    const int64_t kq = groups_of(k), np = panels_of(n);
    for (int64_t i = 0; i < m; i++) {
        const uint8_t *arow = a + i * lda;
        for (int64_t p = 0; p < np; p++) {
            uint32_t acc[PANEL] = {0};
            for (int64_t g = 0; g < kq; g++) {
                int16_t x[4] = {0, 0, 0, 0};
                for (int t = 0; t < 4 && 4 * g + t < k; t++) x[t] = arow[4 * g + t];
                const int8_t *grp = pb + (p * kq + g) * 64;
                for (int jj = 0; jj < PANEL; jj++) {
                    // 16 x 16 -> 32-bit products, |sum of 4| <= 4 * 255 * 128: exact.
                    int32_t s = 0;
                    for (int t = 0; t < 4; t++) s += (int32_t)x[t] * (int32_t)(int16_t)grp[4 * jj + t];
                    acc[jj] += (uint32_t)s;
                }
            }
            for (int jj = 0; jj < PANEL && p * PANEL + jj < n; jj++) emit_ref((int32_t)acc[jj], e, i, p * PANEL + jj);
        }
    }
}

static void epilogue_ref(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) emit_ref(acc[i * ldacc + j], e, i, j);
}

// MARK: - Jobs and dispatch

static cnx_qjob job_s32(int32_t *c, int64_t ldc) {
    cnx_qjob e;
    memset(&e, 0, sizeof e);
    e.mode = CNX_QOUT_S32;
    e.out = c;
    e.ldo = ldc;
    return e;
}

static cnx_qjob job_f32(const int32_t *colsum, int32_t a_zero, float a_scale, const float *w_scale,
                        const float *bias, int act, const float *residual, int64_t ldr, float *out,
                        int64_t ldo) {
    cnx_qjob e;
    memset(&e, 0, sizeof e);
    e.mode = CNX_QOUT_F32;
    e.colsum = colsum;
    e.a_zero = a_zero;
    e.a_scale = a_scale;
    e.w_scale = w_scale;
    e.bias = bias;
    e.act = cnx_act_normalise(act);
    e.residual = residual;
    e.ldr = ldr;
    e.out = out;
    e.ldo = ldo;
    return e;
}

static cnx_qjob job_u8(const int32_t *colsum, int32_t a_zero, float a_scale, const float *w_scale,
                       const float *bias, int act, float o_scale, int32_t o_zero, uint8_t *out,
                       int64_t ldo) {
    cnx_qjob e = job_f32(colsum, a_zero, a_scale, w_scale, bias, act, NULL, 0, NULL, ldo);
    e.mode = CNX_QOUT_U8;
    e.o_inv = 1.0f / o_scale;
    e.o_zero = cnx_u8_zero(o_zero);
    e.out = out;
    return e;
}

int64_t cnx_qgemm_row_tile(void) {
    switch (cnx_qisa_current()) {
    case CNX_QISA_AVX512_VNNI: return QGEMM_MR;
    case CNX_QISA_AVX_VNNI: return CNX_QMR_AVX_VNNI;
    case CNX_QISA_AVX2: return CNX_QMR_AVX2;
    case CNX_QISA_NEON: return CNX_QMR_NEON;
    case CNX_QISA_DOTPROD:
    case CNX_QISA_I8MM: return CNX_QMR_DOT;
    default: return 1;
    }
}

static void gemm_dispatch(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                          const void *packed_b, const cnx_qjob *e) {
    if (m <= 0 || n <= 0) return;
    const cnx_qisa path = cnx_qisa_current();
    switch (path) {
#if CNX_X86
    case CNX_QISA_AVX512_VNNI: cnx_qgemm_run_avx512vnni(m, n, k, a, lda, packed_b, e); return;
    case CNX_QISA_AVX_VNNI: cnx_qgemm_run_avxvnni(m, n, k, a, lda, packed_b, e); return;
    case CNX_QISA_AVX2: cnx_qgemm_run_avx2(m, n, k, a, lda, packed_b, e); return;
#endif
#if CNX_ARM64
    case CNX_QISA_NEON:
    case CNX_QISA_DOTPROD:
    case CNX_QISA_I8MM: cnx_qgemm_run_neon(m, n, k, a, lda, packed_b, e, (int)path); return;
#endif
    default: gemm_portable(m, n, k, a, lda, packed_b, e); return;
    }
}

static void epilogue_dispatch(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                              const cnx_qjob *e) {
    if (m <= 0 || n <= 0) return;
    switch (cnx_qisa_current()) {
#if CNX_X86
    case CNX_QISA_AVX512_VNNI: cnx_qepilogue_avx512(m, n, acc, ldacc, e); return;
    case CNX_QISA_AVX_VNNI:
    case CNX_QISA_AVX2: cnx_qepilogue_avx2(m, n, acc, ldacc, e); return;
#endif
#if CNX_ARM64
    case CNX_QISA_NEON:
    case CNX_QISA_DOTPROD:
    case CNX_QISA_I8MM: cnx_qepilogue_neon(m, n, acc, ldacc, e); return;
#endif
    default: epilogue_ref(m, n, acc, ldacc, e); return;
    }
}

// MARK: - Public entry points

// Each entry point and its `_ref` twin are one job run two ways: by the dispatched path
// (gemm_dispatch / epilogue_dispatch) and by the reference arithmetic (gemm_ref / epilogue_ref).
// ENTRY_PAIR(NAME, PARAMS, JOB, RUN, ARGS) defines NAME with the dispatched runner and NAME_ref
// with the reference one.
#define GEMM_PARAMS int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda, const void *packed_b
#define GEMM_ARGS m, n, k, a, lda, packed_b
#define EPILOGUE_PARAMS int64_t m, int64_t n, const int32_t *acc, int64_t ldacc
#define EPILOGUE_ARGS m, n, acc, ldacc
#define DEQUANT_PARAMS \
    const int32_t *colsum, int32_t a_zero, float a_scale, const float *w_scale, const float *bias, int act
#define F32_PARAMS DEQUANT_PARAMS, const float *residual, int64_t ldr, float *out, int64_t ldo
#define U8_PARAMS DEQUANT_PARAMS, float o_scale, int32_t o_zero, uint8_t *out, int64_t ldo
#define F32_JOB job_f32(colsum, a_zero, a_scale, w_scale, bias, act, residual, ldr, out, ldo)
#define U8_JOB job_u8(colsum, a_zero, a_scale, w_scale, bias, act, o_scale, o_zero, out, ldo)
#define ENTRY_PAIR(NAME, PARAMS, JOB, FAST, REF, ARGS)                                            \
    void NAME(PARAMS) {                                                                          \
        const cnx_qjob e = JOB;                                                                  \
        FAST(ARGS, &e);                                                                          \
    }                                                                                            \
    void NAME##_ref(PARAMS) {                                                                    \
        const cnx_qjob e = JOB;                                                                  \
        REF(ARGS, &e);                                                                           \
    }
#define COMMA ,

ENTRY_PAIR(cnx_qgemm_u8s8_s32, GEMM_PARAMS COMMA int32_t *c COMMA int64_t ldc, job_s32(c, ldc), gemm_dispatch,
           gemm_ref, GEMM_ARGS)
ENTRY_PAIR(cnx_qgemm_epilogue_f32, EPILOGUE_PARAMS COMMA F32_PARAMS, F32_JOB, epilogue_dispatch, epilogue_ref,
           EPILOGUE_ARGS)
ENTRY_PAIR(cnx_qgemm_epilogue_u8, EPILOGUE_PARAMS COMMA U8_PARAMS, U8_JOB, epilogue_dispatch, epilogue_ref,
           EPILOGUE_ARGS)
ENTRY_PAIR(cnx_qgemm_fused_f32, GEMM_PARAMS COMMA F32_PARAMS, F32_JOB, gemm_dispatch, gemm_ref, GEMM_ARGS)
ENTRY_PAIR(cnx_qgemm_fused_u8, GEMM_PARAMS COMMA U8_PARAMS, U8_JOB, gemm_dispatch, gemm_ref, GEMM_ARGS)

// The scalar twin is the reference quantizer itself (cnx_qref.h).
void cnx_quantize_u8_ref(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q) {
    cnx_quantize_u8_reference(x, count, scale, zero, q);
}

void cnx_quantize_u8(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q) {
    if (count <= 0) return;
    const float inv = 1.0f / scale;
    const int32_t z = cnx_u8_zero(zero);
    switch (cnx_qisa_current()) {
#if CNX_X86
    case CNX_QISA_AVX512_VNNI: cnx_quantize_u8_avx512(x, count, inv, z, q); return;
    case CNX_QISA_AVX_VNNI:
    case CNX_QISA_AVX2: cnx_quantize_u8_avx2(x, count, inv, z, q); return;
#endif
#if CNX_ARM64
    case CNX_QISA_NEON:
    case CNX_QISA_DOTPROD:
    case CNX_QISA_I8MM: cnx_quantize_u8_neon(x, count, inv, z, q); return;
#endif
    default:
        cnx_quantize_u8_reference(x, count, scale, zero, q);
        return;
    }
}
