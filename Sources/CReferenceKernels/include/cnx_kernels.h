// C kernels of the reference executor. Every function takes plain pointers and sizes that the
// Swift caller has already checked; none allocates more than its documented scratch.
#ifndef CNX_KERNELS_H
#define CNX_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Geometry of a 2-D convolution over NCHW data.
typedef struct {
    int64_t n, c, h, w;         // input
    int64_t m, kh, kw;          // output channels and kernel size
    int64_t sh, sw, dh, dw;     // strides and dilations
    int64_t pt, pl, pb, pr;     // pads: top, left, bottom, right
    int64_t groups;
    int64_t oh, ow;             // output size (caller computes and checks)
} cnx_conv2d_shape;

/// Floats of scratch memory cnx_conv2d_f32 needs (0 for depthwise and 1x1 stride-1 unpadded).
size_t cnx_conv2d_scratch_floats(const cnx_conv2d_shape *s);

/// y[n, m, oh, ow] = b[m] + sum over the group's channels and the kernel window of x * w.
/// w has shape (m, c / groups, kh, kw); b may be NULL.
void cnx_conv2d_f32(const cnx_conv2d_shape *s, const float *x, const float *w, const float *b,
                    float *y, float *scratch);

/// C (m x n) = alpha * op(A) * op(B) + beta * C, row-major, as BLAS's sgemm (C is not read
/// when beta is 0), on the runtime's packed GEMM (cnx_gemm_f32): no BLAS library. Allocates
/// scratch for the packed B (and transposed copies); without memory, a plain loop does the work.
void cnx_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc);

/// Sets the threads cnx_sgemm splits a large product's rows over (threads > 0; otherwise only
/// reads) and returns the previous count. The default is one per online CPU. (The name is from
/// when this GEMM was OpenBLAS's.)
int cnx_blas_threads(int threads);

/// The threads cnx_sgemm uses now.
int cnx_sgemm_threads_in_use(void);

/// y = erf(x), elementwise.
void cnx_erf_f32(const float *x, float *y, int64_t count);

/// y = 0.5 x (1 + erf(x / sqrt 2)) (exact) or the tanh approximation.
void cnx_gelu_f32(const float *x, float *y, int64_t count, int tanh_approximation);

/// LayerNorm over the last axis of a (rows x cols) matrix; gamma and beta may be NULL.
void cnx_layernorm_lastaxis_f32(const float *x, int64_t rows, int64_t cols, const float *gamma,
                                const float *beta, float eps, float *y);

/// Mean (op 0), sum of squares' root (op 1: L2) or sum (op 2) over the middle axis of an
/// (outer x axis x inner) array; y has outer x inner values.
void cnx_reduce_middle_f32(const float *x, int64_t outer, int64_t axis, int64_t inner, int op,
                           float *y);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Depthwise k x k convolution, stride 1, pad (k-1)/2, over an NHWC map; w is [k][k][c].
void cnx_dwconv_nhwc_f32(const float *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t k,
                         const float *weight, const float *bias, float *y);
#ifdef __cplusplus
}
#endif
