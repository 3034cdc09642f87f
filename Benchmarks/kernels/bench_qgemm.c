// Microbenchmark of the int8 pointwise kernels (cnx_qgemm.h), single-threaded, per path, against
// the float32 GEMM (cnx_gemm_f32, cnx_fast.h) on the same shapes. Built and run by run_qgemm.sh.
// Prints GOP/s = 2 m n k / time (one multiply-add = 2 operations, for int8 and float alike), the
// median of several timed repeats.
//   s32      cnx_qgemm_u8s8_s32 (int32 out)
//   u8       cnx_qgemm_fused_u8 without an activation (u8+gelu minus u8: what GELU costs)
//   u8+gelu  cnx_qgemm_fused_u8 with GELU (ConvNeXt's first pointwise layer: requantized for the next)
//   u8+quad  the same with the quadratic GELU (CNX_ACT_GELU_QUADRATIC: what quantize --int8 writes
//            where the hidden u8 step allows it)
//   f32+res  cnx_qgemm_fused_f32 with a residual (the second pointwise layer)
//   float    cnx_gemm_f32 (AVX-512 path) with the same epilogue as the fused column: bias + GELU
//            for the expanding layers (n = 4k), bias + residual for the contracting ones
#include "cnx_fast.h"
#include "cnx_qgemm.h"
#include "bench_timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned seed = 12345u;
static unsigned next_rand(void) {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}

typedef struct {
    int64_t m, n, k;
    uint8_t *a, *out_u8;
    void *pb;
    const int32_t *colsum;
    int32_t *c;
    float *w_scale, *bias, *residual, *out_f32;
    float *af, *pbf;  // float GEMM
    int act;
} bench;

static void run_s32(void *p) {
    bench *b = p;
    cnx_qgemm_u8s8_s32(b->m, b->n, b->k, b->a, b->k, b->pb, b->c, b->n);
}

// The block's first layer: requantized u8 output with exact GELU (act 1), or without (act 0: the
// difference is what the activation costs in the epilogue).
static void fused_u8(bench *b, int act) {
    cnx_qgemm_fused_u8(b->m, b->n, b->k, b->a, b->k, b->pb, b->colsum, 117, 0.02f, b->w_scale, b->bias, act,
                       0.02f, 20, b->out_u8, b->n);
}
static void run_fused_u8(void *p) { fused_u8(p, CNX_ACT_GELU); }
static void run_fused_u8_quadratic(void *p) { fused_u8(p, CNX_ACT_GELU_QUADRATIC); }
static void run_fused_u8_plain(void *p) { fused_u8(p, 0); }

static void run_fused_f32(void *p) {
    bench *b = p;
    cnx_qgemm_fused_f32(b->m, b->n, b->k, b->a, b->k, b->pb, b->colsum, 117, 0.02f, b->w_scale, b->bias, 0,
                        b->residual, b->n, b->out_f32, b->n);
}

static void run_float(void *p) {
    bench *b = p;
    cnx_gemm_f32(b->m, b->n, b->k, b->af, b->k, b->pbf, b->bias, b->act, b->act ? NULL : b->residual, b->n,
                 b->out_f32, b->n);
}

static const int64_t KN[8][2] = {{96, 384}, {384, 96}, {192, 768}, {768, 192},
                                 {384, 1536}, {1536, 384}, {768, 3072}, {3072, 768}};
static const int64_t MS[4] = {3136, 784, 196, 49};

int main(int argc, char **argv) {
    int all = 0, with_scalar = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0) all = 1;
        else if (strcmp(argv[i], "--scalar") == 0) with_scalar = 1;
        else if (strcmp(argv[i], "--min") == 0) use_min = 1;
        else if (strcmp(argv[i], "--cpu") == 0) clock_id = CLOCK_THREAD_CPUTIME_ID;
        else if (strcmp(argv[i], "--quick") == 0) { repeats = 3; target = 0.01; }
        else {
            fprintf(stderr, "usage: bench_qgemm [--all] [--scalar] [--min] [--cpu] [--quick]\n");
            return 2;
        }
    }
    cnx_qisa paths[4];
    int npaths = 0;
    for (int p = with_scalar ? CNX_QISA_SCALAR : CNX_QISA_AVX2; p <= CNX_QISA_AVX512_VNNI; p++)
        if (cnx_qisa_supported((cnx_qisa)p)) paths[npaths++] = (cnx_qisa)p;
    cnx_isa_force(CNX_ISA_AVX512);
    printf("int8 GEMM, single thread, GOP/s (2 m n k / s); float: cnx_gemm_f32 on the %s path, GFLOP/s\n",
           cnx_isa_name(cnx_isa_current()));
    printf("shapes: %s\n\n", all ? "every m x every (k, n)" : "ConvNeXt-T's own (stage s: m = 3136 / 4^s)");
    printf("%5s %5s %5s  %-10s %8s %8s %8s %8s %8s  %8s  %s\n", "m", "k", "n", "path", "s32", "u8", "u8+gelu",
           "u8+quad", "f32+res", "float", "fused best / float");

    for (int mi = 0; mi < 4; mi++) {
        for (int s = 0; s < 8; s++) {
            if (!all && s / 2 != mi) continue;
            bench b;
            memset(&b, 0, sizeof b);
            b.m = MS[mi];
            b.k = KN[s][0];
            b.n = KN[s][1];
            const int64_t m = b.m, n = b.n, k = b.k;
            b.a = alloc_bytes((size_t)(m * k));
            int8_t *w = alloc_bytes((size_t)(k * n));
            for (int64_t i = 0; i < m * k; i++) b.a[i] = (uint8_t)next_rand();
            for (int64_t i = 0; i < k * n; i++) w[i] = (int8_t)next_rand();
            b.pb = alloc_bytes(cnx_qgemm_packed_b_bytes(k, n));
            cnx_qgemm_pack_b(w, k, n, b.pb);
            b.colsum = cnx_qgemm_packed_col_sums(b.pb, k, n);
            b.c = alloc_bytes((size_t)(m * n) * 4);
            b.out_u8 = alloc_bytes((size_t)(m * n));
            b.out_f32 = alloc_bytes((size_t)(m * n) * 4);
            b.residual = alloc_bytes((size_t)(m * n) * 4);
            b.w_scale = alloc_bytes((size_t)n * 4);
            b.bias = alloc_bytes((size_t)n * 4);
            b.af = alloc_bytes((size_t)(m * k) * 4);
            b.pbf = alloc_bytes(cnx_gemm_packed_b_floats(k, n) * 4);
            float *wf = alloc_bytes((size_t)(k * n) * 4);
            for (int64_t j = 0; j < n; j++) {
                b.w_scale[j] = 1e-4f * (float)(1 + next_rand() % 100);
                b.bias[j] = (float)(next_rand() % 1000) * 1e-3f - 0.5f;
            }
            for (int64_t i = 0; i < m * n; i++) b.residual[i] = (float)(next_rand() % 1000) * 1e-3f;
            for (int64_t i = 0; i < m * k; i++) b.af[i] = (float)b.a[i] / 255.0f;
            for (int64_t i = 0; i < k * n; i++) wf[i] = (float)w[i] / 128.0f;
            cnx_gemm_pack_b(wf, k, n, b.pbf);
            b.act = n > k;  // expanding layer: GELU; contracting: residual

            const double ops = 2.0 * (double)m * (double)n * (double)k;
            const double gflops = ops / time_call(run_float, &b) * 1e-9;
            for (int pi = 0; pi < npaths; pi++) {
                cnx_qisa_force(paths[pi]);
                const double s32 = ops / time_call(run_s32, &b) * 1e-9;
                const double u8_plain = ops / time_call(run_fused_u8_plain, &b) * 1e-9;
                const double u8 = ops / time_call(run_fused_u8, &b) * 1e-9;
                const double u8q = ops / time_call(run_fused_u8_quadratic, &b) * 1e-9;
                const double f32 = ops / time_call(run_fused_f32, &b) * 1e-9;
                const double fused = b.act ? u8 : f32;  // the layer's own epilogue
                printf("%5lld %5lld %5lld  %-10s %8.1f %8.1f %8.1f %8.1f %8.1f  %8.1f  %5.2fx\n", (long long)m, (long long)k,
                       (long long)n, cnx_qisa_name(paths[pi]), s32, u8_plain, u8, u8q, f32, gflops, fused / gflops);
                fflush(stdout);
            }
            cnx_qisa_force(-1);
            free(b.a); free(w); free(b.pb); free(b.c); free(b.out_u8); free(b.out_f32); free(b.residual);
            free(b.w_scale); free(b.bias); free(b.af); free(b.pbf); free(wf);
        }
    }
    return 0;
}
