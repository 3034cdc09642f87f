// The arm64 kernel paths against their scalar twins, run by scripts/arm64-test.sh under
// qemu-aarch64 on several CPU models. Every SIMD path the CPU offers is forced in turn (and a
// list of paths the caller expects, --expect, must all be offered) and compared with the `_ref`
// function on odd sizes:
//   - float kernels (GEMM + bias / activation / residual, depthwise, LayerNorm, RMSNorm,
//     activations): max |got - ref| / max |ref| < 1e-5, as the x86 tests (Tests/CKernelsTests);
//     the activations elementwise within 2e-6 + 1e-6 |ref| (the quadratic GELU bit for bit, and its
//     u8 epilogue outputs exactly); the NEON exact GELU bit for bit equal
//     to a scalar model of the AVX-512 formula (the same table, fmaf for its fused steps);
//   - the bfloat16 depthwise of int8 blocks (no dot kernel here): cnx_round_bf16_f32 bit for bit
//     against cnx_round_bf16_ref, and the float kernel on the rounded input within 1e-5 of the twin;
//   - int8 kernels: the s32 GEMM, and the epilogues and quantizer without activation, bit-exact;
//     with an activation, float outputs within 1e-6 (relative to the largest output) of the
//     reference and u8 outputs within 1, and bit-exact against the same path's epilogue without
//     activation followed by that path's activation (the epilogue's activation is the float
//     kernels' one).
// Prints one line per failed case, a line per path, and `N passed, N failed`; exits 1 on failure.
#define CNX_QGEMM_INTERNAL  // neon_internal.h declares the int8 entry points with its job type
#include "cnx_fast.h"
#include "cnx_half.h"
#include "cnx_qgemm.h"
#include "neon_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int g_passed, g_failed, g_path_passed, g_path_failed;
static const char *g_path = "";

static void check(int ok, const char *fmt, ...) {
    if (ok) {
        g_passed++;
        g_path_passed++;
        return;
    }
    g_failed++;
    g_path_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL [%s] ", g_path);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void begin_path(const char *name) {
    g_path = name;
    g_path_passed = g_path_failed = 0;
}

static void end_path(void) { printf("path %-14s %d passed, %d failed\n", g_path, g_path_passed, g_path_failed); }

// MARK: - Data

static uint64_t g_rng = 0x243F6A8885A308D3ull;

static uint32_t rnd(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 32);
}

static float rndf(float scale) { return ((float)(int32_t)rnd() / 2147483648.0f) * scale; }

static float *floats(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = rndf(scale);
    return p;
}

static float *copy_floats(const float *x, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    memcpy(p, x, n * sizeof(float));
    return p;
}

// max |got - ref| / max |ref| over n values (the x86 tests' measure); NaN in either -> inf.
static double rel_error(const float *got, const float *ref, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) != isnan(ref[i])) return INFINITY;
        if (isnan(ref[i])) continue;
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(d)) d = (got[i] == ref[i]) ? 0 : INFINITY;  // same infinities
        if (d > diff) diff = d;
        if (fabs(ref[i]) > scale && !isinf(ref[i])) scale = fabs(ref[i]);
    }
    return scale == 0 ? diff : diff / scale;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

// MARK: - Float kernels

static const char *ACT_NAMES[5] = {"none", "gelu", "gelu_tanh", "silu", "gelu_quadratic"};

// c = residual + act(A B + bias) by the scalar twins: cnx_gemm_f32_ref without activation and
// residual, then cnx_activation_inplace_f32_ref, then the residual.
static void gemm_oracle(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                        const float *pb, const float *bias, int act, const float *res, int64_t ldr,
                        float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        float row[512];
        cnx_gemm_f32_ref(1, n, k, a + i * lda, lda, pb, bias, 0, NULL, 0, row, n);
        cnx_activation_inplace_f32_ref(row, n, act);
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = (res ? res[i * ldr + j] : 0.0f) + row[j];
    }
}

static void test_gemm(void) {
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {1, 1, 0}, {2, 3, 4}, {5, 15, 7}, {6, 16, 17}, {7, 17, 3}, {13, 31, 64}, {1, 33, 9},
        {37, 70, 300}, {19, 32, 517}, {12, 48, 96}, {8, 5, 1}, {29, 65, 257},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        const int64_t lda = k + 3, ldc = n + 2;
        float *a = floats((size_t)(m * lda), 1.0f), *b = floats((size_t)(k * n), 1.0f);
        float *bias = floats((size_t)n, 0.5f);
        float *pb = malloc((cnx_gemm_packed_b_floats(k, n) + 1) * sizeof(float));
        cnx_gemm_pack_b(b, k, n, pb);
        for (int act = 0; act < 5; act++) {
            for (int variant = 0; variant < 4; variant++) {
                // 0: plain; 1: bias; 2: bias + separate residual; 3: bias + residual in C.
                const float *bb = variant ? bias : NULL;
                float *c = floats((size_t)(m * ldc), 1.0f), *want = copy_floats(c, (size_t)(m * ldc));
                float *res = variant == 2 ? floats((size_t)(m * n), 1.0f) : NULL;
                const float *r = variant == 2 ? res : variant == 3 ? c : NULL;
                const int64_t ldr = variant == 2 ? n : ldc;
                gemm_oracle(m, n, k, a, lda, pb, bb, act, variant == 3 ? want : r, ldr, want, ldc);
                cnx_gemm_f32(m, n, k, a, lda, pb, bb, act, r, ldr, c, ldc);
                double err = 0;
                for (int64_t i = 0; i < m; i++) {
                    double e = rel_error(c + i * ldc, want + i * ldc, (size_t)n);
                    if (e > err) err = e;
                }
                // The padding between rows (ldc > n) is left alone.
                int pad_ok = 1;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = n; j < ldc; j++) pad_ok &= c[i * ldc + j] == want[i * ldc + j];
                check(err < 1e-5 && pad_ok, "gemm %lldx%lldx%lld act %s variant %d: error %.3g, padding %s",
                      (long long)m, (long long)n, (long long)k, ACT_NAMES[act], variant, err, pad_ok ? "kept" : "written");
                free(c);
                free(want);
                free(res);
            }
        }
        // A column range [32, n) alone, as the runtime splits wide layers across threads.
        if (n > 32) {
            float *c = calloc((size_t)(m * n), sizeof(float)), *want = calloc((size_t)(m * n), sizeof(float));
            gemm_oracle(m, n, k, a, lda, pb, bias, 1, NULL, 0, want, n);
            cnx_gemm_f32(m, n - 32, k, a, lda, pb + 32 * k, bias + 32, 1, NULL, 0, c + 32, n);
            double err = 0;
            for (int64_t i = 0; i < m; i++) {
                double e = rel_error(c + i * n + 32, want + i * n + 32, (size_t)(n - 32));
                if (e > err) err = e;
            }
            check(err < 1e-5, "gemm column range %lldx%lldx%lld: error %.3g", (long long)m, (long long)n, (long long)k, err);
            free(c);
            free(want);
        }
        free(a);
        free(b);
        free(bias);
        free(pb);
    }
}

// GELU as the AVX-512 path computes it (fast_gemm.c gelu512), one float at a time; fmaf is the
// fused multiply-add.
static float gelu_model(float x) {
    const float a = fabsf(x);
    const float s = fminf(a * (16.0f / NEON_GELU_AMAX), 15.99999f);
    const float f = floorf(s);
    const int idx = (int)f;
    const float u = s - f;
    float p = cnx_gelu_q16[5][idx];
    for (int j = 4; j >= 0; j--) p = fmaf(p, u, cnx_gelu_q16[j][idx]);
    const float relu = x > 0.0f ? x : 0.0f;
    return a < NEON_GELU_AMAX ? fmaf(-a, p, relu) : relu;
}

static void test_activations(void) {
    const int grid_n = 20481;
    float *grid = malloc((size_t)grid_n * sizeof(float));
    for (int i = 0; i < grid_n; i++) grid[i] = (float)(i - 10240) / 1024.0f;
    const float extremes[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, 1e-30f, -1e-20f, 11, -11, 30, -30, 87,
                              -87, 89, -89, 1e3f, -1e3f, 1e10f, -1e10f, 3e38f, -3e38f, INFINITY, -INFINITY, NAN};
    const int ext_n = (int)(sizeof extremes / sizeof extremes[0]);
    for (int act = 1; act < 5; act++) {
        for (int part = 0; part < 2; part++) {
            const float *x = part ? extremes : grid;
            const int total = part ? ext_n : grid_n;
            // Odd counts exercise the tails.
            const int counts[] = {total, 1, 3, 7, 13};
            for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
                const int n = counts[ci];
                float *got = copy_floats(x, (size_t)n), *ref = copy_floats(x, (size_t)n);
                cnx_activation_inplace_f32(got, n, act);
                cnx_activation_inplace_f32_ref(ref, n, act);
                int bad = -1;
                for (int i = 0; i < n && bad < 0; i++) {
                    if (isinf(x[i]) && (isnan(ref[i]) || isnan(got[i]))) {
                        // x (1 + erf(x / sqrt 2)) / 2 and x / (1 + exp(-x)) are inf * 0 at -inf:
                        // NaN, or the limit (0) where a form avoids the product.
                        if (!(isnan(got[i]) || got[i] == 0.0f)) bad = i;
                    } else if (isnan(ref[i]) || isnan(got[i])) {
                        if (isnan(ref[i]) != isnan(got[i])) bad = i;
                    } else if (isinf(ref[i]) || isinf(got[i])) {
                        if (ref[i] != got[i]) bad = i;
                    } else if (act == CNX_ACT_GELU_QUADRATIC ? !same_bits(&got[i], &ref[i], sizeof got[i])
                                                             : !(fabsf(got[i] - ref[i]) <= 2e-6f + 1e-6f * fabsf(ref[i]))) {
                        bad = i;  // the quadratic GELU: one specification, the same bits
                    }
                }
                check(bad < 0, "activation %s %s count %d: at x = %g got %.9g, ref %.9g", ACT_NAMES[act],
                      part ? "extremes" : "grid", n, bad < 0 ? 0.0 : x[bad], bad < 0 ? 0.0 : got[bad], bad < 0 ? 0.0 : ref[bad]);
                if (act == 1 && ci == 0) {
                    // cnx_gelu_inplace_f32 is the same function; and equals the AVX-512 formula.
                    float *g = copy_floats(x, (size_t)n);
                    cnx_gelu_inplace_f32(g, n);
                    check(same_bits(g, got, (size_t)n * sizeof(float)), "gelu_inplace == activation(gelu) %s", part ? "extremes" : "grid");
                    int model_bad = -1;
                    for (int i = 0; i < n && model_bad < 0; i++) {
                        const float mv = gelu_model(x[i]);
                        if (!(isnan(x[i]) ? isnan(got[i]) : same_bits(&mv, &got[i], sizeof mv))) model_bad = i;
                    }
                    check(model_bad < 0, "gelu %s: same bits as the AVX-512 formula (first difference at x = %g)",
                          part ? "extremes" : "grid", model_bad < 0 ? 0.0 : x[model_bad]);
                    free(g);
                }
                free(got);
                free(ref);
            }
        }
    }
    free(grid);
}

static void test_dwconv(void) {
    static const int64_t shapes[][4] = {  // h, w, c, k
        {1, 1, 1, 3}, {5, 7, 3, 3}, {9, 13, 8, 7}, {7, 7, 12, 7}, {14, 15, 21, 5}, {6, 20, 4, 9},
        {8, 8, 17, 1}, {3, 2, 13, 7}, {14, 14, 96, 7}, {10, 9, 6, 5}, {2, 30, 10, 3},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t h = shapes[s][0], w = shapes[s][1], c = shapes[s][2], k = shapes[s][3];
        const size_t nx = (size_t)(h * w * c);
        float *x = floats(nx, 1.0f), *wt = floats((size_t)(k * k * c), 0.3f), *bias = floats((size_t)c, 0.5f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const int64_t ranges[][2] = {{0, h}, {h / 3, h - h / 3}, {h - 1, h}};
            for (int ri = 0; ri < 3; ri++) {
                const int64_t y0 = ranges[ri][0], y1 = ranges[ri][1];
                float *got = malloc(nx * sizeof(float)), *ref = malloc(nx * sizeof(float));
                for (size_t i = 0; i < nx; i++) got[i] = ref[i] = 1234.5f;  // outside [y0, y1): untouched
                cnx_dwconv_nhwc_rows_f32(x, h, w, c, k, wt, with_bias ? bias : NULL, got, y0, y1);
                cnx_dwconv_nhwc_rows_f32_ref(x, h, w, c, k, wt, with_bias ? bias : NULL, ref, y0, y1);
                const double err = rel_error(got, ref, nx);
                check(err < 1e-5, "dwconv %lldx%lldx%lld k %lld bias %d rows [%lld, %lld): error %.3g", (long long)h,
                      (long long)w, (long long)c, (long long)k, with_bias, (long long)y0, (long long)y1, err);
                free(got);
                free(ref);
            }
        }
        free(x);
        free(wt);
        free(bias);
    }
}

// A bfloat16 depthwise (an int8 block's) on arm64: no dot kernel (cnx_dwconv_bf16_runs is 0), so
// the runtime rounds the input with cnx_round_bf16_f32 (bit for bit cnx_round_bf16_ref, ties,
// denormals, NaN and the carry into infinity included) and runs the NEON float32 depthwise on it
// with the weights' bfloat16 values: within float rounding of the bf16 twin (the same products,
// another order).
static void test_bf16_depthwise(void) {
    check(cnx_dwconv_bf16_runs(7) == 0, "no bfloat16 dot depthwise on arm64");
    const size_t n = 1031;
    float *x = floats(n, 50.0f), *got = malloc(n * sizeof(float));
    uint16_t *bits = malloc(n * sizeof(uint16_t));
    const float special[] = {0.0f, -0.0f, 1e-40f, -1e-41f, 1.00390625f, -1.01171875f, 3.4028235e38f, INFINITY, NAN, 65504.0f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) x[i * 13] = special[i];
    cnx_round_bf16_ref(x, (int64_t)n, bits);
    cnx_round_bf16_f32(x, (int64_t)n, got);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, got + i, 4);
        same += u == (uint32_t)bits[i] << 16;
    }
    check(same == n, "cnx_round_bf16_f32 against cnx_round_bf16_ref: %zu of %zu the same", same, n);
    free(x);
    free(got);
    free(bits);
    const int64_t h = 9, w = 13, c = 24, k = 7;
    const size_t nx = (size_t)(h * w * c), nw = (size_t)(k * k * c);
    float *in = floats(nx, 3.0f), *wt = floats(nw, 0.3f), *bias = floats((size_t)c, 0.5f), *rounded = malloc(nx * sizeof(float));
    float *wr = malloc(nw * sizeof(float)), *fast = malloc(nx * sizeof(float)), *twin = malloc(nx * sizeof(float));
    cnx_round_bf16_f32(wt, (int64_t)nw, wr);
    cnx_round_bf16_f32(in, (int64_t)nx, rounded);
    cnx_dwconv_nhwc_rows_f32(rounded, h, w, c, k, wr, bias, fast, 0, h);
    cnx_dwconv_nhwc_rows_bf16_ref(in, h, w, c, k, wr, bias, twin, 0, h);
    const double err = rel_error(fast, twin, nx);
    check(err < 1e-5, "bf16 depthwise by the float kernel on the rounded input against the twin: error %.3g", err);
    free(in);
    free(wt);
    free(bias);
    free(rounded);
    free(wr);
    free(fast);
    free(twin);
}

static void test_norms(void) {
    static const int64_t cs[] = {1, 2, 3, 4, 5, 7, 16, 17, 33, 96, 97, 768};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        const int64_t c = cs[ci], rows = 5;
        const size_t n = (size_t)(rows * c);
        float *x = floats(n, 2.0f);
        for (size_t i = 0; i < n; i++) x[i] += 3.0f;  // a mean far from 0: the two passes matter
        float *gamma = floats((size_t)c, 1.0f), *beta = floats((size_t)c, 1.0f);
        for (int norm = 0; norm < 2; norm++) {
            for (int flags = 0; flags < 4; flags++) {
                const float *g = flags & 1 ? gamma : NULL, *b = flags & 2 ? beta : NULL;
                float *got = copy_floats(x, n), *ref = malloc(n * sizeof(float));
                // In place (y == x) for the fast path, out of place for the twin.
                if (norm == 0) {
                    cnx_layernorm_rows_f32(got, rows, c, 1e-6f, g, b, got);
                    cnx_layernorm_rows_f32_ref(x, rows, c, 1e-6f, g, b, ref);
                } else {
                    cnx_rmsnorm_rows_f32(got, rows, c, 1e-6f, g, b, got);
                    cnx_rmsnorm_rows_f32_ref(x, rows, c, 1e-6f, g, b, ref);
                }
                const double err = rel_error(got, ref, n);
                check(err < 1e-5, "%s c %lld gamma %d beta %d: error %.3g", norm ? "rmsnorm" : "layernorm", (long long)c,
                      g != NULL, b != NULL, err);
                free(got);
                free(ref);
            }
        }
        free(x);
        free(gamma);
        free(beta);
    }
}

// MARK: - Int8 kernels

// m rows of k bytes, lda apart, the last row ending where a PROT_NONE page begins: a kernel that
// reads past a row's k bytes faults.
typedef struct {
    uint8_t *rows;
    void *map;
    size_t map_len;
} guarded;

static guarded guarded_rows(int64_t m, int64_t k, int64_t lda, int extreme) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t bytes = (size_t)((m - 1) * lda + k);
    const size_t data_pages = (bytes + page - 1) / page + 1;
    guarded g;
    g.map_len = (data_pages + 1) * page;
    g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.map == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    mprotect((uint8_t *)g.map + data_pages * page, page, PROT_NONE);
    g.rows = (uint8_t *)g.map + data_pages * page - bytes;
    for (size_t i = 0; i < bytes; i++) g.rows[i] = extreme ? 255 : (uint8_t)rnd();
    return g;
}

static void qgemm_shape(int64_t m, int64_t n, int64_t k, int extreme) {
    const int64_t lda = m > 1 ? k + 5 : k, ldc = n + 3;
    guarded ga = guarded_rows(m, k, lda, extreme);
    int8_t *b = malloc((size_t)(k * n) + 1);
    for (int64_t i = 0; i < k * n; i++) b[i] = extreme ? (int8_t)(i % 2 ? -128 : 127) : (int8_t)rnd();
    void *pb = malloc(cnx_qgemm_packed_b_bytes(k, n) + 64);
    cnx_qgemm_pack_b(b, k, n, pb);
    const int32_t *colsum = cnx_qgemm_packed_col_sums(pb, k, n);
    const size_t nc = (size_t)(m * ldc);
    int32_t *got = malloc(nc * sizeof(int32_t)), *ref = malloc(nc * sizeof(int32_t));
    for (size_t i = 0; i < nc; i++) got[i] = ref[i] = 0x5A5A5A5A;
    cnx_qgemm_u8s8_s32(m, n, k, ga.rows, lda, pb, got, ldc);
    cnx_qgemm_u8s8_s32_ref(m, n, k, ga.rows, lda, pb, ref, ldc);
    check(same_bits(got, ref, nc * sizeof(int32_t)), "qgemm s32 %lldx%lldx%lld%s: not bit-identical", (long long)m,
          (long long)n, (long long)k, extreme ? " extreme" : "");
    if (n > 16) {
        // Columns [16, n) alone, from the packed B of all n starting at its second panel.
        int32_t *part = malloc(nc * sizeof(int32_t));
        const int8_t *panel1 = (const int8_t *)pb + (k + 3) / 4 * 64;
        cnx_qgemm_u8s8_s32(m, n - 16, k, ga.rows, lda, panel1, part, ldc);
        int same = 1;
        for (int64_t i = 0; i < m; i++) same &= same_bits(part + i * ldc, ref + i * ldc + 16, (size_t)(n - 16) * sizeof(int32_t));
        check(same, "qgemm s32 %lldx%lldx%lld columns [16, n): not bit-identical", (long long)m, (long long)n, (long long)k);
        free(part);
    }

    // Epilogue parameters: per-column scales around 1e-3, zero point 37.
    float *w_scale = malloc((size_t)n * sizeof(float)), *bias = floats((size_t)n, 0.3f);
    for (int64_t j = 0; j < n; j++) w_scale[j] = 1e-4f + fabsf(rndf(2e-3f));
    const float a_scale = 0.02f, o_scale = 0.05f;
    const int32_t a_zero = 37, o_zero = 100;
    for (int act = 0; act < 5; act++) {
        for (int flags = 0; flags < 8; flags++) {
            const int32_t *cs = flags & 1 ? colsum : NULL;
            const float *ws = flags & 2 ? w_scale : NULL, *bs = flags & 4 ? bias : NULL;
            float *res = floats((size_t)(m * n), 1.0f);
            float *fg = malloc(nc * sizeof(float)), *fr = malloc(nc * sizeof(float));
            for (size_t i = 0; i < nc; i++) fg[i] = fr[i] = -7.0f;
            cnx_qgemm_fused_f32(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, act, res, n, fg, ldc);
            uint8_t *ug = malloc(nc), *ur = malloc(nc);
            memset(ug, 0xEE, nc);
            memset(ur, 0xEE, nc);
            cnx_qgemm_fused_u8(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, act, o_scale, o_zero, ug, ldc);
            if (act == 0) {
                cnx_qgemm_fused_f32_ref(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, 0, res, n, fr, ldc);
                cnx_qgemm_fused_u8_ref(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, 0, o_scale, o_zero, ur, ldc);
                check(same_bits(fg, fr, nc * sizeof(float)) && same_bits(ug, ur, nc),
                      "qgemm fused %lldx%lldx%lld flags %d: f32 %s, u8 %s", (long long)m, (long long)n, (long long)k, flags,
                      same_bits(fg, fr, nc * sizeof(float)) ? "exact" : "DIFFERS", same_bits(ug, ur, nc) ? "exact" : "DIFFERS");
            } else {
                // Oracle: the reference without activation, then the scalar activation, residual.
                float *y = malloc(nc * sizeof(float));
                cnx_qgemm_fused_f32_ref(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, 0, NULL, 0, y, ldc);
                for (int64_t i = 0; i < m; i++) cnx_activation_inplace_f32_ref(y + i * ldc, n, act);
                float *want = malloc(nc * sizeof(float));
                uint8_t *uw = malloc(nc);
                for (int64_t i = 0; i < m; i++) {
                    cnx_quantize_u8_ref(y + i * ldc, n, o_scale, o_zero, uw + i * ldc);
                    for (int64_t j = 0; j < n; j++) want[i * ldc + j] = res[i * n + j] + y[i * ldc + j];
                }
                double err = 0;
                int u8_off = 0;
                for (int64_t i = 0; i < m; i++) {
                    const double e = rel_error(fg + i * ldc, want + i * ldc, (size_t)n);
                    if (e > err) err = e;
                    for (int64_t j = 0; j < n; j++) {
                        const int d = abs((int)ug[i * ldc + j] - (int)uw[i * ldc + j]);
                        if (d > u8_off) u8_off = d;
                    }
                }
                // The same path without activation, then its activation: the same bits.
                float *sep = malloc(nc * sizeof(float));
                uint8_t *usep = malloc(nc);
                cnx_qgemm_fused_f32(m, n, k, ga.rows, lda, pb, cs, a_zero, a_scale, ws, bs, 0, NULL, 0, sep, ldc);
                int chain = 1;
                for (int64_t i = 0; i < m; i++) {
                    cnx_activation_inplace_f32(sep + i * ldc, n, act);
                    cnx_quantize_u8(sep + i * ldc, n, o_scale, o_zero, usep + i * ldc);
                    chain &= same_bits(usep + i * ldc, ug + i * ldc, (size_t)n);
                    for (int64_t j = 0; j < n; j++) {
                        const float v = res[i * n + j] + sep[i * ldc + j];
                        chain &= same_bits(&v, &fg[i * ldc + j], sizeof v);
                    }
                }
                check(err < 1e-6 && u8_off <= (act == CNX_ACT_GELU_QUADRATIC ? 0 : 1) && chain,
                      "qgemm fused %lldx%lldx%lld act %s flags %d: f32 error %.3g, u8 off by %d, chained epilogue %s",
                      (long long)m, (long long)n, (long long)k, ACT_NAMES[act], flags, err, u8_off, chain ? "same" : "DIFFERS");
                free(y);
                free(want);
                free(uw);
                free(sep);
                free(usep);
            }
            free(res);
            free(fg);
            free(fr);
            free(ug);
            free(ur);
        }
    }
    free(w_scale);
    free(bias);
    free(got);
    free(ref);
    free(b);
    free(pb);
    munmap(ga.map, ga.map_len);
}

static void test_qgemm(void) {
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {1, 1, 0}, {2, 5, 2}, {3, 15, 3}, {4, 16, 4}, {5, 17, 5}, {6, 33, 7}, {7, 48, 8}, {11, 16, 9},
        {23, 31, 15}, {5, 20, 16}, {9, 7, 17}, {10, 40, 31}, {6, 18, 33}, {13, 50, 100}, {3, 64, 257},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        qgemm_shape(shapes[s][0], shapes[s][1], shapes[s][2], 0);
    // All 255 x (127, -128): the largest products; k = 70001 makes the sums wrap mod 2^32.
    qgemm_shape(7, 17, 36, 1);
    qgemm_shape(2, 3, 70001, 1);
}

static void test_qepilogue_and_quantize(void) {
    const int64_t m = 7, n = 37, ldacc = 41, ldo = 39;
    int32_t *acc = malloc((size_t)(m * ldacc) * sizeof(int32_t)), *colsum = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < m * ldacc; i++) acc[i] = (int32_t)rnd() >> (i % 3 ? 12 : 0);  // some near INT32 limits
    acc[0] = INT32_MIN;
    acc[1] = INT32_MAX;
    for (int64_t j = 0; j < n; j++) colsum[j] = (int32_t)(rnd() % 20001) - 10000;
    float *w_scale = malloc((size_t)n * sizeof(float)), *bias = floats((size_t)n, 2.0f);
    for (int64_t j = 0; j < n; j++) w_scale[j] = 1e-6f + fabsf(rndf(1e-5f));
    for (int flags = 0; flags < 16; flags++) {
        const int32_t *cs = flags & 1 ? colsum : NULL;
        const float *ws = flags & 2 ? w_scale : NULL, *bs = flags & 4 ? bias : NULL;
        const int with_res = flags & 8;
        float *res = floats((size_t)(m * ldo), 1.0f);
        float *fg = copy_floats(res, (size_t)(m * ldo)), *fr = copy_floats(res, (size_t)(m * ldo));
        // With the residual in place (out == residual).
        cnx_qgemm_epilogue_f32(m, n, acc, ldacc, cs, 12, 0.01f, ws, bs, 0, with_res ? fg : NULL, ldo, fg, ldo);
        cnx_qgemm_epilogue_f32_ref(m, n, acc, ldacc, cs, 12, 0.01f, ws, bs, 0, with_res ? fr : NULL, ldo, fr, ldo);
        uint8_t ug[7 * 39], ur[7 * 39];
        memset(ug, 1, sizeof ug);
        memset(ur, 1, sizeof ur);
        cnx_qgemm_epilogue_u8(m, n, acc, ldacc, cs, 12, 0.01f, ws, bs, 0, 0.04f, 130, ug, ldo);
        cnx_qgemm_epilogue_u8_ref(m, n, acc, ldacc, cs, 12, 0.01f, ws, bs, 0, 0.04f, 130, ur, ldo);
        check(same_bits(fg, fr, (size_t)(m * ldo) * sizeof(float)) && same_bits(ug, ur, sizeof ug),
              "epilogue flags %d: f32 %s, u8 %s", flags, same_bits(fg, fr, (size_t)(m * ldo) * sizeof(float)) ? "exact" : "DIFFERS",
              same_bits(ug, ur, sizeof ug) ? "exact" : "DIFFERS");
        free(res);
        free(fg);
        free(fr);
    }
    // The quantizer: ties at every .5, NaN, infinities, huge values, zero points out of range.
    const int64_t count = 1000;
    float *x = malloc((size_t)count * sizeof(float));
    for (int64_t i = 0; i < count; i++) x[i] = i < 600 ? (float)(i - 300) * 0.25f : rndf(1e3f);
    const float specials[] = {NAN, -NAN, INFINITY, -INFINITY, 3e38f, -3e38f, 1e-40f, -0.0f, 127.5f, 128.5f, -0.5f, 0.5f};
    memcpy(x + 900, specials, sizeof specials);
    const float scales[] = {1.0f, 0.5f, 0.1f, 3.0f, 1e-30f};
    const int32_t zeros[] = {0, 128, 255, -5, 300};
    for (int si = 0; si < 5; si++) {
        for (int zi = 0; zi < 5; zi++) {
            for (int64_t len = count; len > 0; len = len > 17 ? 17 : len - 7) {  // 1000, 17, 10, 3
                uint8_t qg[1000], qr[1000];
                cnx_quantize_u8(x, len, scales[si], zeros[zi], qg);
                cnx_quantize_u8_ref(x, len, scales[si], zeros[zi], qr);
                check(same_bits(qg, qr, (size_t)len), "quantize scale %g zero %d count %lld: not bit-identical",
                      (double)scales[si], zeros[zi], (long long)len);
            }
        }
    }
    free(x);
    free(acc);
    free(colsum);
    free(w_scale);
    free(bias);
}

// MARK: - Half-precision GEMM

// bf16 by BFDOT against the dot twin, float16 (FCVTL + FMLA) against its twin; odd sizes, every
// bias / activation / residual (separate, in C) combination. BFDOT rounds each of its two
// additions per pair to odd (the twin: to nearest even), so the bf16 bound is elementwise, from
// the sizes: |got - ref| <= 4 (k/2 + 1) 2^-23 S with S = |start| + sum |a_bf16 w| (both paths'
// rounding errors over their k/2 pairs of two additions), times 1.2 through an activation plus
// the activation's own 2e-6 + 2e-6 |ref| (NEON vs libm), plus 2^-23 |ref| for the last add.
// float16 without activation: bit for bit; with one, within 2e-6 + 2e-6 |ref|.
static void test_hgemm(int bf16) {
    static const int64_t sizes[][3] = {{1, 7, 9}, {5, 33, 65}, {13, 96, 130}, {4, 16, 1}, {3, 50, 0}, {7, 31, 2}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t m = sizes[si][0], n = sizes[si][1], k = sizes[si][2];
        const int64_t lda = k + 3, ldc = n + 2;
        float *a = floats((size_t)(m * lda), 1.0f);
        uint16_t *w = malloc((size_t)(k * n + 1) * sizeof(uint16_t));
        for (int64_t i = 0; i < k * n; i++)
            w[i] = bf16 ? cnx_bf16_from_f32(rndf(0.5f)) : cnx_f16_from_f32(rndf(0.5f));
        uint16_t *pb = malloc((cnx_hgemm_packed_b_halves(k, n) + 1) * sizeof(uint16_t));
        if (bf16) cnx_hgemm_pack_b_bf16(w, k, n, pb);
        else cnx_hgemm_pack_b_f16(w, k, n, pb);
        float *bias = floats((size_t)n, 1.0f);
        float *res = floats((size_t)(m * ldc), 2.0f);
        // S per output (bf16 bound): the bf16-rounded activations times |w|.
        float *sabs = calloc((size_t)(m * n), sizeof(float));
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                for (int64_t kk = 0; kk < k; kk++)
                    sabs[i * n + j] += fabsf(cnx_f32_from_bf16(cnx_bf16_from_f32(a[i * lda + kk])) *
                                             (bf16 ? cnx_f32_from_bf16(w[kk * n + j]) : cnx_f32_from_f16(w[kk * n + j])));
        for (int act = 0; act < 2; act++) {
            for (int variant = 0; variant < 4; variant++) {
                // 0: plain; 1: bias; 2: bias + separate residual; 3: bias + residual in C.
                const float *bb = variant ? bias : NULL;
                float *got = copy_floats(res, (size_t)(m * ldc)), *want = copy_floats(res, (size_t)(m * ldc));
                const float *rg = variant == 2 ? res : variant == 3 ? got : NULL;
                const float *rw = variant == 2 ? res : variant == 3 ? want : NULL;
                if (bf16) {
                    cnx_gemm_bf16(m, n, k, a, lda, pb, bb, act, rg, ldc, got, ldc);
                    cnx_gemm_bf16_dot_ref(m, n, k, a, lda, pb, bb, act, rw, ldc, want, ldc);
                } else {
                    cnx_gemm_f16(m, n, k, a, lda, pb, bb, act, rg, ldc, got, ldc);
                    cnx_gemm_f16_ref(m, n, k, a, lda, pb, bb, act, rw, ldc, want, ldc);
                }
                int bad = 0;
                double worst = 0;
                for (int64_t i = 0; i < m && !bad; i++) {
                    for (int64_t j = 0; j < ldc; j++) {
                        const float g = got[i * ldc + j], r = want[i * ldc + j];
                        if (j >= n) {  // outside the columns: untouched
                            if (g != res[i * ldc + j]) bad = 1;
                            continue;
                        }
                        double tol;
                        if (bf16) {
                            const double start = fabs(bb ? bb[j] : 0.0) + (variant >= 2 ? fabs(res[i * ldc + j]) : 0.0);
                            const double e = 4.0 * (double)(k / 2 + 1) * 0x1p-23 * (start + sabs[i * n + j]);
                            tol = (act ? 1.2 * e + 2e-6 + 2e-6 * fabs(r) : e) + 0x1p-23 * fabs(r);
                        } else {
                            tol = act ? 2e-6 + 2e-6 * fabs(r) : 0.0;
                        }
                        const double d = fabs((double)g - (double)r);
                        if (!(d <= tol)) bad = 1;
                        if (d > worst) worst = d;
                    }
                }
                check(!bad, "%s gemm %lldx%lldx%lld act %d variant %d: max |got - twin| %.3g beyond the bound",
                      bf16 ? "bf16" : "f16", (long long)m, (long long)n, (long long)k, act, variant, worst);
                free(got);
                free(want);
            }
        }
        free(a);
        free(w);
        free(pb);
        free(bias);
        free(res);
        free(sabs);
    }
}

// MARK: - Driver

int main(int argc, char **argv) {
    const char *expect = "";  // comma-separated int8 paths that must be offered
    const char *label = "";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) expect = argv[++i];
        else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc) label = argv[++i];
    }
    const unsigned f = cnx_arm64_features();
    printf("arm64 kernels%s%s: features%s%s%s%s\n", *label ? " on " : "", label, f & CNX_ARM64_DOTPROD ? " dotprod" : "",
           f & CNX_ARM64_I8MM ? " i8mm" : "", f & CNX_ARM64_BF16 ? " bf16" : "", f ? "" : " (baseline NEON only)");

    // Float: NEON, forced (it is the automatic choice too).
    cnx_isa_force(CNX_ISA_NEON);
    begin_path("float/neon");
    check(cnx_isa_current() == CNX_ISA_NEON, "the NEON path is offered (got %s)", cnx_isa_name(cnx_isa_current()));
    check(cnx_isa_detect() == CNX_ISA_NEON, "NEON is the automatic choice");
    test_gemm();
    test_activations();
    test_dwconv();
    test_bf16_depthwise();
    test_norms();
    end_path();
    cnx_isa_force(-1);

    // Int8: every path the CPU offers.
    const cnx_qisa paths[] = {CNX_QISA_NEON, CNX_QISA_DOTPROD, CNX_QISA_I8MM};
    char seen[64] = "";
    for (size_t p = 0; p < 3; p++) {
        if (!cnx_qisa_supported(paths[p])) {
            printf("path int8/%-9s skipped: not offered by this CPU\n", cnx_qisa_name(paths[p]));
            continue;
        }
        cnx_qisa_force((int)paths[p]);
        char name[32];
        snprintf(name, sizeof name, "int8/%s", cnx_qisa_name(paths[p]));
        begin_path(name);
        check(cnx_qisa_current() == paths[p], "forcing %s", cnx_qisa_name(paths[p]));
        test_qgemm();
        test_qepilogue_and_quantize();
        end_path();
        strcat(seen, ",");
        strcat(seen, cnx_qisa_name(paths[p]));
    }
    cnx_qisa_force(-1);

    // Half precision: the BFDOT path where the CPU has BF16; elsewhere forcing it gives float.
    cnx_hpath_force(CNX_HPATH_NEON_BF16);
    if (f & CNX_ARM64_BF16) {
        begin_path("half/neonbf16");
        check(cnx_hpath_current() == CNX_HPATH_NEON_BF16, "forcing neonbf16");
        check(cnx_hpath_detect() == CNX_HPATH_NEON_BF16, "neonbf16 is the automatic choice");
        test_hgemm(1);
        test_hgemm(0);
        end_path();
        strcat(seen, ",bf16");
    } else {
        begin_path("half/no-bf16");
        check(cnx_hpath_current() == CNX_HPATH_FLOAT, "forcing neonbf16 without BF16 gives float (got %s)",
              cnx_hpath_name(cnx_hpath_current()));
        check(cnx_hpath_detect() == CNX_HPATH_FLOAT, "float is the automatic half path without BF16");
        end_path();
    }
    cnx_hpath_force(CNX_HPATH_AVX512_BF16);
    check(cnx_hpath_current() == CNX_HPATH_FLOAT, "forcing avx512bf16 on arm64 gives float");
    cnx_hpath_force(-1);
    begin_path("expectations");
    // The best offered path is the automatic choice; every expected path ran.
    check(cnx_qisa_detect() == (cnx_qisa_supported(CNX_QISA_I8MM) ? CNX_QISA_I8MM
                                : cnx_qisa_supported(CNX_QISA_DOTPROD) ? CNX_QISA_DOTPROD : CNX_QISA_NEON),
          "automatic int8 path %s", cnx_qisa_name(cnx_qisa_detect()));
    // The environment lowers the automatic choice, never above the hardware, and an x86 name
    // gives scalar.
    setenv("CNX_ISA", "scalar", 1);
    check(cnx_isa_detect() == CNX_ISA_SCALAR, "CNX_ISA=scalar");
    setenv("CNX_ISA", "avx512", 1);
    check(cnx_isa_detect() == CNX_ISA_SCALAR, "CNX_ISA=avx512 on arm64 gives scalar");
    unsetenv("CNX_ISA");
    cnx_isa_force(CNX_ISA_AVX2);
    check(cnx_isa_current() == CNX_ISA_SCALAR, "forcing avx2 on arm64 gives scalar");
    cnx_isa_force(-1);
    // One variable (cnx_cpu.h levels) for the float and the int8 kernels.
    setenv("CNX_ISA", "dotprod", 1);
    check(cnx_qisa_detect() == (cnx_qisa_supported(CNX_QISA_DOTPROD) ? CNX_QISA_DOTPROD : CNX_QISA_NEON), "CNX_ISA=dotprod");
    check(cnx_isa_detect() == CNX_ISA_NEON, "CNX_ISA=dotprod keeps the float NEON path");
    setenv("CNX_ISA", "neon", 1);
    check(cnx_qisa_detect() == CNX_QISA_NEON, "CNX_ISA=neon: int8 NEON without dot product");
    setenv("CNX_ISA", "avx512vnni", 1);
    check(cnx_qisa_detect() == CNX_QISA_SCALAR, "CNX_ISA=avx512vnni on arm64 gives scalar");
    setenv("CNX_ISA", "scalar", 1);
    check(cnx_qisa_detect() == CNX_QISA_SCALAR, "CNX_ISA=scalar lowers the int8 path too");
    unsetenv("CNX_ISA");
    char list[128];
    snprintf(list, sizeof list, "%s", expect);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char needle[40];
        snprintf(needle, sizeof needle, ",%s", tok);
        const char *hit = strstr(seen, needle);
        check(hit && (hit[strlen(needle)] == ',' || hit[strlen(needle)] == 0), "expected path %s ran", tok);
    }
    end_path();
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
