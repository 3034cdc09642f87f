// Layout change of a feature map leaving the network: rows of channels (NHWC) to channel planes
// (NCHW), for cnx.Features. Pure data movement: a blocked loop the compiler vectorises as it can;
// no SIMD path of its own, so nothing to dispatch.
#include "cnx_fast.h"

void cnx_rows_to_planes_f32(const float *x, int64_t rows, int64_t c, float *y, int64_t ldy) {
    enum { TILE = 32 };
    for (int64_t r0 = 0; r0 < rows; r0 += TILE) {
        const int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
        for (int64_t c0 = 0; c0 < c; c0 += TILE) {
            const int64_t c1 = c0 + TILE < c ? c0 + TILE : c;
            for (int64_t ch = c0; ch < c1; ch++) {
                float *dst = y + ch * ldy;
                for (int64_t r = r0; r < r1; r++) dst[r] = x[r * c + ch];
            }
        }
    }
}
