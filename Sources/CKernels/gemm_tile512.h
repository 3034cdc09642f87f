// Private to Sources/CKernels: the two ends of an AVX-512 GEMM micro-tile of up to 14 rows x 32
// columns (two zmm accumulators a row), shared by the float GEMM (fast_gemm.c) and the
// half-precision-weight GEMM (fast_hgemm_avx512.c), which differ only in the K loop between.
//   start: the first K block initialises the accumulators from the bias, plus the residual when
//          no activation sits between; later K blocks reload the partial sums from C.
//   finish: the last K block with an activation runs it (and the residual after it) on a copy
//          of the tile in L1: a plain loop keeps the accumulators from competing with the
//          activation's temporaries for registers (the copy is not C, because the residual may
//          be C); otherwise the accumulators are stored.
#ifndef CNX_GEMM_TILE512_H
#define CNX_GEMM_TILE512_H

#include "activation.h"
#include "gemm_tile.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#define CNX_TILE512_MR 14

/// Column masks of a tile's two vectors, valid_n columns inside C.
#define CNX_TILE512_MASKS(vn, m0, m1)                                                                \
    const __mmask16 m0 = (vn) >= 16 ? 0xFFFF : (__mmask16)((1u << (vn)) - 1);                        \
    const __mmask16 m1 = (vn) >= 32 ? 0xFFFF : (vn) <= 16 ? 0 : (__mmask16)((1u << ((vn) - 16)) - 1)

CNX_ACT_INLINE CNX_ACT_T512 void cnx_tile512_start(const int R, __m512 *acc0, __m512 *acc1, const float *c, int64_t ldc,
                                                   const cnx_tile_ep *e, __mmask16 m0, __mmask16 m1) {
    if (e->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (e->bias) {
            b0 = _mm512_maskz_loadu_ps(m0, e->bias);
            b1 = _mm512_maskz_loadu_ps(m1, e->bias + 16);
        }
        const int fold = e->residual && !e->act;
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) {
            acc0[r] = fold ? _mm512_add_ps(b0, _mm512_maskz_loadu_ps(m0, e->residual + r * e->ldr)) : b0;
            acc1[r] = fold ? _mm512_add_ps(b1, _mm512_maskz_loadu_ps(m1, e->residual + r * e->ldr + 16)) : b1;
        }
        return;
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        acc0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
        acc1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
}

CNX_ACT_INLINE CNX_ACT_T512 void cnx_tile512_act_rows(const int ACT, int mr, __m512 (*tile)[2], float *c, int64_t ldc,
                                                      const cnx_tile_ep *e, __mmask16 m0, __mmask16 m1) {
    const float *res = e->residual;
    for (int r = 0; r < mr; r++) {
        __m512 v[2] = {tile[r][0], tile[r][1]};
        cnx_act512_n(ACT, 2, v);
        if (res) {
            v[0] = _mm512_add_ps(v[0], _mm512_maskz_loadu_ps(m0, res + r * e->ldr));
            v[1] = _mm512_add_ps(v[1], _mm512_maskz_loadu_ps(m1, res + r * e->ldr + 16));
        }
        _mm512_mask_storeu_ps(c + r * ldc, m0, v[0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, v[1]);
    }
}

// Out of line: one copy of each activation's epilogue per file, not one per tile height.
static CNX_ACT_T512 __attribute__((noinline, unused)) void
cnx_tile512_act(int act, int mr, __m512 (*tile)[2], float *c, int64_t ldc, const cnx_tile_ep *e, __mmask16 m0, __mmask16 m1) {
#define CNX_TILE512_BODY(ACT) cnx_tile512_act_rows(ACT, mr, tile, c, ldc, e, m0, m1)
    CNX_ACT_DISPATCH(act, CNX_TILE512_BODY);
#undef CNX_TILE512_BODY
}

CNX_ACT_INLINE CNX_ACT_T512 void cnx_tile512_finish(const int R, const __m512 *acc0, const __m512 *acc1, float *c, int64_t ldc,
                                                    const cnx_tile_ep *e, __mmask16 m0, __mmask16 m1) {
    if (e->last && e->act) {
        __m512 tile[CNX_TILE512_MR][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++) tile[r][0] = acc0[r], tile[r][1] = acc1[r];
        cnx_tile512_act(e->act, R, tile, c, ldc, e, m0, m1);
        return;
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
}

#endif
#endif
