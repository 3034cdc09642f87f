// Microbenchmark of the bfloat16 GEMM (cnx_gemm_bf16, the vdpbf16ps path on CPUs with
// AVX512_BF16) beside the float32 GEMM (cnx_gemm_f32), one thread, on the pointwise shapes the
// runtime hands them in ConvNeXt-T (a row tile of the large maps; the whole late-stage maps of
// the column split), and the share of the vdpbf16ps peak each reaches. The peak is measured in the
// same process before each shape (the best of all measurements so far is used): 24 independent
// accumulator chains of vdpbf16ps.
// Timings are wall clock, the best of 15 repeats (steady on a shared machine when some repeats
// run uncontended). Built and run by run_hgemm.sh.
#include "cnx_fast.h"
#include "cnx_half.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

// Multiply-adds per second of vdpbf16ps alone (32 per instruction), the best of every call's 15
// repeats so far.
static double g_best_dp = 1e9;
__attribute__((target("avx512f,avx512bf16"))) static double dp_peak(void) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);
    const long n = 500000;
    double best = g_best_dp;
    for (int r = 0; r < 15; r++) {
        const double t0 = now();
        for (long i = 0; i < n; i++) {
#pragma clang loop unroll(full)
            for (int j = 0; j < 24; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, a);
            __asm__ volatile("" ::"v"(acc[0]));
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    __m512 s = acc[0];  // every chain used, so none is dropped
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    g_best_dp = best;
    return (double)n * 24 * 32 / best;
}

int main(void) {
    if (cnx_hpath_available() != CNX_HPATH_AVX512_BF16) {
        printf("this CPU has no AVX512_BF16 path (%s): nothing to measure\n", cnx_hpath_name(cnx_hpath_available()));
        return 0;
    }
    printf("a vdpbf16ps takes %.2fx an FMA's time here: the runtime's default bf16 path is %s\n",
           cnx_hpath_bf16_dot_time_ratio(), cnx_hpath_name(cnx_hpath_detect()));
    // m x k x n: a 121-row tile of stage 0 (56x56 = 3136 rows in 26 tiles), a 112-row tile of
    // stage 1, the whole stage-2 and stage-3 maps (196 and 49 rows); the first layer of each pair
    // with its GELU epilogue, the second without.
    // The last two: a 58-row tile of ConvNeXt-B's stage 2 at 384 (24x24 = 576 rows in 10 tiles).
    static const int shapes[][3] = {{121, 96, 384}, {121, 384, 96},  {112, 192, 768},  {112, 768, 192},
                                    {196, 384, 1536}, {196, 1536, 384}, {49, 768, 3072}, {49, 3072, 768},
                                    {58, 512, 2048}, {58, 2048, 512},
                                    // one thread's half of a column split: stage 2 and 3 at batch 1,
                                    // and stage 3 with 8 images' rows
                                    {196, 384, 768}, {196, 1536, 192}, {49, 768, 1536}, {49, 3072, 384},
                                    {392, 768, 1536}, {392, 3072, 384}};
    // bf16: float activations rounded in the kernel (cnx_gemm_bf16); bf16 in: activations already
    // bfloat16 (cnx_gemm_bf16_a16, as a bf16 block runs on this path), the first layer writing
    // bfloat16, the second float32 with the residual; widened: the avx512 path's kernel (bf16
    // weights widened to float, float FMAs), the default where the dot product is slow.
    printf("     m     k     n  act   bf16 GMAC/s   bf16 in GMAC/s   widened GMAC/s   f32 GMAC/s   bf16/f32   wide/f32   bf16/peak   bf16 in/peak\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2], act = k < n ? CNX_ACT_GELU : CNX_ACT_NONE;
        // The second layer reads the block's hidden activation with the runtime's row stride: a
        // cache line more when k is a multiple of 32 floats (FastExecutor's ldh) or 64 halves (its
        // ldh16), so that a tile's rows do not all fall in the same few L1 sets. Without it,
        // 56 x 2048 x 512 (14-row tiles) measured 0.75 of the peak with bfloat16 inputs instead of
        // 0.98, and the widened path 0.67 of float32's instead of 0.95.
        const int lda = !act && k % 32 == 0 ? k + 16 : k, lda16 = !act && k % 64 == 0 ? k + 32 : k;
        float *a = aligned_alloc(64, 4 * (size_t)m * lda + 64), *b = aligned_alloc(64, 4 * (size_t)k * n + 64);
        float *c = aligned_alloc(64, 4 * (size_t)m * n + 64), *bias = aligned_alloc(64, 4 * (size_t)n + 64);
        uint16_t *bh = malloc(2 * (size_t)k * n);
        uint16_t *pb = aligned_alloc(64, 2 * cnx_hgemm_packed_b_halves(k, n) + 64);
        float *pf = aligned_alloc(64, 4 * cnx_gemm_packed_b_floats(k, n) + 64);
        fill(a, (size_t)m * lda, 1);
        fill(b, (size_t)k * n, 2);
        fill(bias, (size_t)n, 3);
        fill(c, (size_t)m * n, 4);
        cnx_bf16_from_f32_n(b, (int64_t)k * n, bh);
        cnx_hgemm_pack_b_bf16(bh, k, n, pb);
        cnx_gemm_pack_b(b, k, n, pf);
        uint16_t *a16 = aligned_alloc(64, 2 * (size_t)m * lda16 + 64), *c16 = aligned_alloc(64, 2 * (size_t)m * n + 64);
        for (int r = 0; r < m; r++) cnx_round_bf16(a + (size_t)r * lda, k, a16 + (size_t)r * lda16);
        const double macs = (double)m * n * k, peak = dp_peak();
        const int reps = (int)(3e7 / macs) + 1;
        double best_h = 1e9, best_f = 1e9, best_a = 1e9, best_w = 1e9;
        for (int r = 0; r < 15; r++) {
            // The second layer adds the residual in place, as in a block.
            cnx_hpath_force(CNX_HPATH_AVX512);
            double tw = now();
            for (int i = 0; i < reps; i++) cnx_gemm_bf16(m, n, k, a, lda, pb, bias, act, act ? NULL : c, n, c, n);
            if ((now() - tw) / reps < best_w) best_w = (now() - tw) / reps;
            cnx_hpath_force(CNX_HPATH_AVX512_BF16);
            double t0 = now();
            for (int i = 0; i < reps; i++) cnx_gemm_bf16(m, n, k, a, lda, pb, bias, act, act ? NULL : c, n, c, n);
            double t1 = now();
            for (int i = 0; i < reps; i++) cnx_gemm_f32(m, n, k, a, lda, pf, bias, act, act ? NULL : c, n, c, n);
            double t2 = now();
            for (int i = 0; i < reps; i++)
                cnx_gemm_bf16_a16(m, n, k, a16, lda16, pb, bias, act, act ? NULL : c, n, act ? NULL : c, act ? c16 : NULL, n);
            double t3 = now();
            if ((t1 - t0) / reps < best_h) best_h = (t1 - t0) / reps;
            if ((t2 - t1) / reps < best_f) best_f = (t2 - t1) / reps;
            if ((t3 - t2) / reps < best_a) best_a = (t3 - t2) / reps;
        }
        printf("%6d%6d%6d  %-4s %10.1f %14.1f %16.1f %12.1f %10.2f %10.2f %11.2f %14.2f\n", m, k, n, act ? "gelu" : "-",
               macs / best_h * 1e-9, macs / best_a * 1e-9, macs / best_w * 1e-9, macs / best_f * 1e-9, best_f / best_h,
               best_f / best_w, macs / best_h / peak, macs / best_a / peak);
        free(a), free(b), free(c), free(bias), free(bh), free(pb), free(pf), free(a16), free(c16);
    }
    return 0;
}
