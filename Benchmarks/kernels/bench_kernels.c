// Microbenchmark of the fast kernels (Sources/CKernels/fast_*.c), single-threaded, against
// OpenBLAS's cblas_sgemm (one thread). Built and run by run.sh. Prints GFLOP/s (2 m n k / time)
// and milliseconds; every figure is the median of several timed repeats.
#include "cnx_fast.h"
#include "bench_timing.h"

#include <cblas.h>
#include <immintrin.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *alloc_floats(size_t count) { return (float *)alloc_bytes(count * sizeof(float)); }

static void fill(float *x, size_t count, unsigned seed) {
    for (size_t i = 0; i < count; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

// The CPU's float FMA peak: 24 independent chains of 512-bit (16-float) FMAs, 4096 steps a call,
// so a GEMM's GFLOP/s can be read as a share of it (2 x 16 flops an FMA).
static __attribute__((target("avx512f"))) void run_fma_peak(void *ctx) {
    __m512 a[24];
    const __m512 b = _mm512_set1_ps(1.0001f), c = _mm512_set1_ps(-0.0001f);
    for (int i = 0; i < 24; i++) a[i] = _mm512_set1_ps((float)i);
    for (int k = 0; k < 4096; k++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 24; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 t = a[0];
    for (int i = 1; i < 24; i++) t = _mm512_add_ps(t, a[i]);
    *(float *)ctx = _mm512_reduce_add_ps(t);
}

typedef struct {
    int64_t m, n, k;
    float *a, *b, *pb, *bias, *c;
    int act;
} gemm_ctx;

static int64_t lda_pad = 0;  // --lda-pad P: A's rows k + P floats apart

// A GEMM of m x k by k x n with filled inputs, B packed, a bias, and no activation.
static gemm_ctx make_gemm(int64_t m, int64_t n, int64_t k) {
    gemm_ctx g = {m, n, k, alloc_floats((size_t)(m * (k + lda_pad))), alloc_floats((size_t)(k * n)),
                  alloc_floats(cnx_gemm_packed_b_floats(k, n)), alloc_floats((size_t)n),
                  alloc_floats((size_t)(m * n)), 0};
    fill(g.a, (size_t)(m * (k + lda_pad)), 1);
    fill(g.b, (size_t)(k * n), 2);
    fill(g.bias, (size_t)n, 3);
    cnx_gemm_pack_b(g.b, k, n, g.pb);
    return g;
}

static void free_gemm(gemm_ctx *g) {
    free(g->a); free(g->b); free(g->pb); free(g->bias); free(g->c);
}

static void run_ours(void *p) {
    gemm_ctx *g = p;
    cnx_gemm_f32(g->m, g->n, g->k, g->a, g->k + lda_pad, g->pb, g->bias, g->act, NULL, 0, g->c, g->n);
}

static void run_blas(void *p) {
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, 1.0f,
                g->a, (int)(g->k + lda_pad), g->b, (int)g->n, 0.0f, g->c, (int)g->n);
}

typedef struct {
    int64_t h, w, c;
    float *x, *wt, *bias, *y;
    int ref;
} dw_ctx;

static void run_dw(void *p) {
    dw_ctx *d = p;
    if (d->ref) cnx_dwconv_nhwc_rows_f32_ref(d->x, d->h, d->w, d->c, 7, d->wt, d->bias, d->y, 0, d->h);
    else cnx_dwconv_nhwc_rows_f32(d->x, d->h, d->w, d->c, 7, d->wt, d->bias, d->y, 0, d->h);
}

typedef struct { int64_t rows, c; float *x, *y; } ln_ctx;
static void run_ln(void *p) {
    ln_ctx *l = p;
    cnx_layernorm_rows_f32(l->x, l->rows, l->c, 1e-6f, NULL, NULL, l->y);
}
static void run_gelu(void *p) {
    ln_ctx *l = p;
    memcpy(l->y, l->x, (size_t)(l->rows * l->c) * sizeof(float));
    cnx_gelu_inplace_f32(l->y, l->rows * l->c);
}

// The activation / norm of the --act section: kind 0..3 = CNX_ACT_*, 4 = RMS norm, 5 = simple norm,
// 6 = the quadratic GELU (CNX_ACT_GELU_QUADRATIC).
typedef struct { ln_ctx l; int kind; } act_ctx;
static void run_act(void *p) {
    act_ctx *a = p;
    const int64_t count = a->l.rows * a->l.c;
    if (a->kind == 4) { cnx_rmsnorm_rows_f32(a->l.x, a->l.rows, a->l.c, 1e-6f, NULL, NULL, a->l.y); return; }
    if (a->kind == 5) { cnx_simplenorm_rows_f32(a->l.x, a->l.rows, a->l.c, 1e-6f, NULL, NULL, a->l.y); return; }
    memcpy(a->l.y, a->l.x, (size_t)count * sizeof(float));
    cnx_activation_inplace_f32(a->l.y, count, a->kind == 6 ? CNX_ACT_GELU_QUADRATIC : a->kind);
}

// GEMM epilogues with each activation (the first pointwise layer of ConvNeXt-Atto and -T, k x 4k
// at the stage's full image) and the elementwise activations and norms, per path.
static void act_section(cnx_isa hw) {
    static const char *ACT_NAMES[4] = {"none", "gelu", "gelu_tanh", "silu"};
    static const int64_t PW1[6][2] = {{3136, 40}, {784, 80}, {196, 160}, {3136, 96}, {784, 192}, {49, 768}};
    printf("\nGEMM + bias + activation (pw1: k x 4k), single thread, GFLOP/s\n");
    printf("%6s %5s %5s %-7s | %8s %8s %8s %8s\n", "m", "k", "n", "path", ACT_NAMES[0], ACT_NAMES[1],
           ACT_NAMES[2], ACT_NAMES[3]);
    for (int s = 0; s < 6; s++) {
        int64_t m = PW1[s][0], k = PW1[s][1], n = 4 * k;
        gemm_ctx g = make_gemm(m, n, k);
        const double flop = 2.0 * (double)m * (double)n * (double)k;
        for (int isa = 2; isa >= 1; isa--) {
            if (isa > (int)hw) continue;
            cnx_isa_force(isa);
            printf("%6lld %5lld %5lld %-7s |", (long long)m, (long long)k, (long long)n, cnx_isa_name((cnx_isa)isa));
            for (int act = 0; act < 4; act++) {
                g.act = act;
                printf(" %8.1f", flop / time_call(run_ours, &g) / 1e9);
            }
            printf("\n");
        }
        free_gemm(&g);
    }
    printf("\nActivations (copy + in place) and norms over 3136 x 160 floats, single thread, ms\n");
    printf("%10s | %9s %9s %9s\n", "", "avx512", "avx2", "scalar");
    static const char *NAMES[7] = {"copy", "gelu", "gelu_tanh", "silu", "rmsnorm", "simplenorm", "gelu_quad"};
    act_ctx a = {{3136, 160, alloc_floats(3136 * 160), alloc_floats(3136 * 160)}, 0};
    fill(a.l.x, 3136 * 160, 8);
    for (int kind = 0; kind < 7; kind++) {
        a.kind = kind;
        printf("%10s |", NAMES[kind]);
        for (int isa = 2; isa >= 0; isa--) {
            if (isa > (int)hw) { printf(" %9s", "-"); continue; }
            cnx_isa_force(isa);
            printf(" %9.3f", time_call(run_act, &a) * 1e3);
        }
        printf("\n");
    }
    free(a.l.x); free(a.l.y);
    cnx_isa_force(-1);
}

static const int64_t KN[8][2] = {{96, 384}, {384, 96}, {192, 768}, {768, 192},
                                 {384, 1536}, {1536, 384}, {768, 3072}, {3072, 768}};
static const int64_t STAGE_M[4] = {3136, 784, 196, 49};

int main(int argc, char **argv) {
    int quick = 0, gemm_only = 0, act_only = 0, dw_only = 0, nshapes = 0;
    int64_t shapes[16][3];
    repeats = 9;      // of about 30 ms each
    target = 0.03;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--act") == 0) act_only = 1;
        else if (strcmp(argv[i], "--gemm") == 0) gemm_only = 1;
        else if (strcmp(argv[i], "--dw") == 0) dw_only = 1;
        else if (strcmp(argv[i], "--min") == 0) use_min = 1;
        else if (strcmp(argv[i], "--cpu") == 0) clock_id = CLOCK_THREAD_CPUTIME_ID;
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) repeats = atoi(argv[++i]);
        else if (strcmp(argv[i], "--lda-pad") == 0 && i + 1 < argc) lda_pad = atoll(argv[++i]);
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc && nshapes < 16 &&
                 sscanf(argv[i + 1], "%" SCNd64 ",%" SCNd64 ",%" SCNd64, &shapes[nshapes][0], &shapes[nshapes][1],
                        &shapes[nshapes][2]) == 3 && shapes[nshapes][0] > 0 && shapes[nshapes][1] > 0 &&
                 shapes[nshapes][2] > 0) {
            nshapes++;
            gemm_only = 1;
            i++;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--gemm] [--act] [--dw] [--min] [--cpu] [--repeats N] [--lda-pad P] [--shape M,K,N ...]\n", argv[0]);
            return 2;
        }
    }
    openblas_set_num_threads(1);
    cnx_isa hw = cnx_isa_detect();
    printf("CPU path: %s; OpenBLAS core: %s, 1 thread\n\n", cnx_isa_name(hw), openblas_get_corename());
    if (act_only) {
        act_section(hw);
        return 0;
    }

    if (dw_only) goto depthwise;
    if (hw >= CNX_ISA_AVX512) {
        float sink = 0;
        printf("Float FMA peak (24 chains of 512-bit FMAs): %.1f GFLOP/s\n\n", 24.0 * 4096 * 32 / time_call(run_fma_peak, &sink) / 1e9);
    }
    printf("GEMM C = A B, single thread, GFLOP/s (2mnk/t); +gelu: with the bias + GELU epilogue;\n"
           "ratio: best plain path / OpenBLAS cblas_sgemm.\n");
    printf("%6s %5s %5s | %8s %8s | %8s %8s | %8s %6s | %8s\n", "m", "k", "n", "avx512", "+gelu",
           "avx2", "+gelu", "openblas", "ratio", "blas ms");
    // The table: each ConvNeXt-T pointwise (k, n) at m = 64, 256 and its stage's map size; or the
    // shapes given with --shape (one row each).
    for (int s = 0; s < (nshapes ? 1 : 8); s++) {
        int64_t k = KN[s][0], n = KN[s][1];
        int64_t ms[4] = {64, 256, STAGE_M[s / 2], 0};
        for (int mi = 0; mi < (nshapes ? nshapes : 3); mi++) {
            int64_t m = ms[mi < 3 ? mi : 0];
            if (nshapes) m = shapes[mi][0], k = shapes[mi][1], n = shapes[mi][2];
            else if (mi == 2 && (m == 64 || m == 256)) continue;
            if (quick && !nshapes && mi != 1) continue;
            gemm_ctx g = make_gemm(m, n, k);
            double flop = 2.0 * (double)m * (double)n * (double)k;
            double r[5] = {0, 0, 0, 0, 0};
            if (hw >= CNX_ISA_AVX512) {
                cnx_isa_force(CNX_ISA_AVX512);
                g.act = 0; r[0] = flop / time_call(run_ours, &g) / 1e9;
                g.act = 1; r[1] = flop / time_call(run_ours, &g) / 1e9;
            }
            if (hw >= CNX_ISA_AVX2) {
                cnx_isa_force(CNX_ISA_AVX2);
                g.act = 0; r[2] = flop / time_call(run_ours, &g) / 1e9;
                g.act = 1; r[3] = flop / time_call(run_ours, &g) / 1e9;
            }
            double tb = time_call(run_blas, &g);
            r[4] = flop / tb / 1e9;
            printf("%6lld %5lld %5lld | %8.1f %8.1f | %8.1f %8.1f | %8.1f %6.2f | %8.3f\n", (long long)m,
                   (long long)k, (long long)n, r[0], r[1], r[2], r[3], r[4],
                   (r[0] > 0 ? r[0] : r[2]) / r[4], tb * 1e3);
            free_gemm(&g);
        }
    }
    cnx_isa_force(-1);
    if (gemm_only) return 0;

depthwise:
    printf("\nDepthwise 7x7, whole image, single thread, ms (GFLOP/s = 2 h w c 49 / t)\n");
    printf("%14s | %14s %14s %14s\n", "h x w x c", "avx512", "avx2", "scalar ref");
    // ConvNeXt-T 224's stages, then ConvNeXt-B 384's (512 and 1024 channels: 2 and 4 KB between
    // a channel block's pixels, the case the AVX-512 path copies into a blocked layout).
    static const int64_t DW[8][3] = {{56, 56, 96}, {28, 28, 192}, {14, 14, 384}, {7, 7, 768},
                                     {96, 96, 128}, {48, 48, 256}, {24, 24, 512}, {12, 12, 1024}};
    for (int s = 0; s < 8; s++) {
        int64_t h = DW[s][0], w = DW[s][1], c = DW[s][2];
        dw_ctx d = {h, w, c, alloc_floats((size_t)(h * w * c)), alloc_floats((size_t)(49 * c)),
                    alloc_floats((size_t)c), alloc_floats((size_t)(h * w * c)), 0};
        fill(d.x, (size_t)(h * w * c), 4);
        fill(d.wt, (size_t)(49 * c), 5);
        fill(d.bias, (size_t)c, 6);
        double flop = 2.0 * (double)(h * w * c) * 49.0, t[3] = {0, 0, 0};
        if (hw >= CNX_ISA_AVX512) { cnx_isa_force(CNX_ISA_AVX512); t[0] = time_call(run_dw, &d); }
        if (hw >= CNX_ISA_AVX2) { cnx_isa_force(CNX_ISA_AVX2); t[1] = time_call(run_dw, &d); }
        d.ref = 1;
        t[2] = time_call(run_dw, &d);
        char name[32];
        snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)h, (long long)w, (long long)c);
        printf("%14s |", name);
        for (int i = 0; i < 3; i++) printf("  %6.3f (%4.0f)", t[i] * 1e3, t[i] > 0 ? flop / t[i] / 1e9 : 0.0);
        printf("\n");
        free(d.x); free(d.wt); free(d.bias); free(d.y);
    }
    cnx_isa_force(-1);
    if (dw_only) return 0;

    printf("\nLayerNorm and GELU (copy + in place) over 3136 x 96 and 3136 x 384, single thread, ms\n");
    printf("%14s | %9s %9s %9s\n", "", "avx512", "avx2", "scalar");
    static const int64_t LN[2][2] = {{3136, 96}, {3136, 384}};
    for (int s = 0; s < 2; s++) {
        ln_ctx l = {LN[s][0], LN[s][1], alloc_floats((size_t)(LN[s][0] * LN[s][1])),
                    alloc_floats((size_t)(LN[s][0] * LN[s][1]))};
        fill(l.x, (size_t)(l.rows * l.c), 7);
        for (int f = 0; f < 2; f++) {
            printf("%8s %5lld |", f ? "gelu" : "lnorm", (long long)l.c);
            for (int isa = 2; isa >= 0; isa--) {
                if (isa > (int)hw) { printf(" %9s", "-"); continue; }
                cnx_isa_force(isa);
                printf(" %9.3f", time_call(f ? run_gelu : run_ln, &l) * 1e3);
            }
            printf("\n");
        }
        free(l.x); free(l.y);
    }
    cnx_isa_force(-1);
    if (!quick) act_section(hw);
    return 0;
}
