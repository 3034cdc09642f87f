// The reference kernels' general GEMM (cnx_sgemm: transposes, leading dimensions, alpha and
// beta, as BLAS's sgemm) on the runtime's own packed GEMM (cnx_gemm_f32, Sources/CKernels), so
// that nothing here needs a BLAS: B is packed once per call, rows are split across threads.
// When a scratch allocation fails it falls back to a plain loop that allocates nothing.
#include "cnx_fast.h"
#include "cnx_kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

// Threads per call: 0 means one per online CPU (what OpenBLAS did by default).
static int gemm_threads = 0;

int cnx_blas_threads(int threads) {
    const int previous = cnx_sgemm_threads_in_use();
    if (threads > 0) __atomic_store_n(&gemm_threads, threads, __ATOMIC_RELAXED);
    return previous;
}

int cnx_sgemm_threads_in_use(void) {
    const int t = __atomic_load_n(&gemm_threads, __ATOMIC_RELAXED);
    if (t > 0) return t;
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)(cpus < 64 ? cpus : 64) : 1;
}

static float at(const float *p, int64_t ld, int trans, int64_t row, int64_t col) {
    return trans ? p[col * ld + row] : p[row * ld + col];
}

// C = alpha op(A) op(B) + beta C one element at a time, in double: the fallback when memory runs out.
static void plain(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < k; p++) acc += (double)at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
            const float prior = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            c[i * ldc + j] = alpha * (float)acc + prior;
        }
    }
}

typedef struct {
    int64_t m, n, k, lda, ldc;
    const float *a, *packed;
    const float *residual;  // C itself when beta == 1, else NULL
    float *c;
} slice;

static void *run_slice(void *arg) {
    const slice *s = (const slice *)arg;
    if (s->m > 0) cnx_gemm_f32(s->m, s->n, s->k, s->a, s->lda, s->packed, NULL, CNX_ACT_NONE, s->residual, s->ldc, s->c, s->ldc);
    return NULL;
}

// C (m x n, leading dimension ldc) = A (m x k, lda) B + (C when accumulate), rows split across threads.
static void multiply(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *packed,
                     int accumulate, float *c, int64_t ldc) {
    int threads = cnx_sgemm_threads_in_use();
    // Threads only pay off on large products; each gets at least 16 rows.
    if ((double)m * (double)n * (double)k < 4e6) threads = 1;
    if (threads > m / 16) threads = (int)(m / 16);
    if (threads < 1) threads = 1;
    slice slices[64];
    pthread_t ids[64];
    int started[64] = {0};
    const int64_t per = (m + threads - 1) / threads;
    for (int t = 0; t < threads; t++) {
        const int64_t r0 = t * per, r1 = r0 + per < m ? r0 + per : m;
        slices[t] = (slice){r1 > r0 ? r1 - r0 : 0, n, k, lda, ldc, a + r0 * lda, packed,
                            accumulate ? c + r0 * ldc : NULL, c + r0 * ldc};
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, run_slice, &slices[t]) == 0;
    run_slice(&slices[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        else run_slice(&slices[t]);  // no thread to be had: this one does the slice
    }
}

void cnx_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        // BLAS semantics: C = beta C, and C is not read when beta is 0.
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    float *packed = (float *)malloc(cnx_gemm_packed_b_floats(k, n) * sizeof(float));
    float *bt = NULL, *at_ = NULL, *product = NULL;
    const int direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    if (trans_b || ldb != n) bt = (float *)malloc((size_t)k * (size_t)n * sizeof(float));
    if (trans_a) at_ = (float *)malloc((size_t)m * (size_t)k * sizeof(float));
    if (!direct) product = (float *)malloc((size_t)m * (size_t)n * sizeof(float));
    if (!packed || ((trans_b || ldb != n) && !bt) || (trans_a && !at_) || (!direct && !product)) {
        free(packed), free(bt), free(at_), free(product);
        plain(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    // B as a contiguous k x n matrix, packed into panels.
    const float *bk = b;
    if (bt) {
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < n; j++) bt[p * n + j] = at(b, ldb, trans_b, p, j);
        bk = bt;
    }
    cnx_gemm_pack_b(bk, k, n, packed);
    // A as rows of k values.
    const float *ak = a;
    int64_t ldak = lda;
    if (at_) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t p = 0; p < k; p++) at_[i * k + p] = a[p * lda + i];
        ak = at_;
        ldak = k;
    }
    if (direct) {
        multiply(m, n, k, ak, ldak, packed, beta == 1.0f, c, ldc);
    } else {
        multiply(m, n, k, ak, ldak, packed, 0, product, n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = alpha * product[i * n + j] + (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]);
    }
    free(packed), free(bt), free(at_), free(product);
}
