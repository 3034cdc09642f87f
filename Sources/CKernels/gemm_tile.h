// Private to Sources/CKernels: what a GEMM micro-tile is told about its epilogue, shared by the
// float GEMMs (fast_gemm.c, neon_gemm.c) and the half-precision-weight GEMM (fast_hgemm_avx512.c).
#ifndef CNX_GEMM_TILE_H
#define CNX_GEMM_TILE_H

#include <stdint.h>

typedef struct {
    const float *bias;      // at the tile's first column, or NULL
    const float *residual;  // at the tile's first row and column, or NULL
    int64_t ldr;
    int act;
    int first, last;        // first / last K block: initialise from bias / run the epilogue
    int64_t valid_n;        // columns of the tile inside C (may exceed the tile width)
    const float *prefetch;  // float AVX-512: the next panel's K block, prefetched by a panel's first tile; or NULL
    int odd_tail;           // widened bf16, last K block, k odd: the last pair of k has its even k only
} cnx_tile_ep;

#endif
