// The AVX-512 VNNI path of the int8 kernels (cnx_qgemm.h): vpdpbusd on zmm.
//
// One vpdpbusd multiplies 64 u8 activations by 64 s8 weights and adds each group of 4 products
// into one of 16 int32 lanes. A packed-B group (64 bytes: 16 columns x 4 k) is exactly its weight
// operand; the activation operand is 4 consecutive bytes of one A row broadcast to all 16 lanes.
// Micro-tile: MR rows x 32 columns (two 16-column panels), MR = 14: 28 zmm accumulators, 2 for
// the weights, 1 for the broadcast. The tile runs the whole K in registers, then the epilogue
// (store s32, or dequantize -> activation -> float / requantized u8) runs on the accumulators before
// anything is written, so the int32 tile never reaches memory.
// Loop nest: row blocks of MC rows (A block kept in L2) -> 32-column tiles -> MR-row tiles; the
// weight panels (32 x k bytes) stay in L1/L2 while the row tiles stream past them.
#define CNX_QGEMM_INTERNAL
#include "cnx_qgemm.h"

#include "activation.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>

#include <string.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")))
#define INLINE static inline __attribute__((always_inline))

#ifndef QGEMM_A_BLOCK
#define QGEMM_A_BLOCK (192 * 1024)  // bytes of A per row block
#endif

// MARK: - Epilogue

INLINE T512 __mmask16 mask16(int64_t valid) {
    return valid >= 16 ? (__mmask16)0xFFFF : valid <= 0 ? (__mmask16)0 : (__mmask16)((1u << valid) - 1);
}

// The per-column terms of 16 columns from j: a_zero colsum, a_scale w_scale, bias.
typedef struct {
    __m512i corr;
    __m512 scale, bias;
} cols512;

INLINE T512 cols512 load_cols512(const cnx_qjob *e, int64_t j, __mmask16 mk) {
    cols512 c;
    c.corr = e->colsum ? _mm512_mullo_epi32(_mm512_set1_epi32(e->a_zero), _mm512_maskz_loadu_epi32(mk, e->colsum + j))
                       : _mm512_setzero_si512();
    c.scale = e->w_scale ? _mm512_mul_ps(_mm512_set1_ps(e->a_scale), _mm512_maskz_loadu_ps(mk, e->w_scale + j))
                         : _mm512_set1_ps(e->a_scale);
    c.bias = e->bias ? _mm512_maskz_loadu_ps(mk, e->bias + j) : _mm512_setzero_ps();
    return c;
}

// q = clamp(round_half_even(y * inv) + zero, 0, 255) as 16 bytes, for N <= 4 vectors, with
// integer clamps: t = min(2^30, y * inv) converted with round-to-nearest-even (NaN, -inf and
// anything below -2^31 give INT_MIN), plus zero (in [0, 255]: no overflow); then saturating packs:
// signed 32 -> 16 bits (vpackssdw; an unsigned pack here would make 65535, which the next pack
// reads as -1), then signed 16 -> unsigned 8 bits (vpackuswb), which clamps to [0, 255]. The same
// bytes as the reference's float clamps: the integers agree wherever the reference's float sum is
// exact (|rint(t)| < 2^24), and both saturate elsewhere. The packs interleave the 4 vectors in
// 4-byte groups within each 128-bit lane; one vpermd gathers each vector's 16 bytes into one lane.
INLINE T512 void requant512_n(const int N, const __m512 *y, float inv, int32_t zero, __m128i *q) {
    __m512i t[4];
#pragma clang loop unroll(full)
    for (int k = 0; k < N; k++) {
        const __m512 v = _mm512_min_ps(_mm512_set1_ps(1073741824.0f), _mm512_mul_ps(y[k], _mm512_set1_ps(inv)));
        t[k] = _mm512_add_epi32(_mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                _mm512_set1_epi32(zero));
    }
#pragma clang loop unroll(full)
    for (int k = N; k < 4; k++) t[k] = t[0];
    const __m512i w01 = _mm512_packs_epi32(t[0], t[1]), w23 = _mm512_packs_epi32(t[2], t[3]);
    const __m512i b = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
                                               _mm512_packus_epi16(w01, w23));
    q[0] = _mm512_castsi512_si128(b);
    if (N > 1) q[1] = _mm512_extracti32x4_epi32(b, 1);
    if (N > 2) q[2] = _mm512_extracti32x4_epi32(b, 2);
    if (N > 3) q[3] = _mm512_extracti32x4_epi32(b, 3);
}

// Writes N vectors of output, rows i..i+N-1 at columns j..j+15 under mk, from their
// accumulators: y = (float)(acc - corr) * scale + bias (two roundings, as the reference), the
// activation ACT (activation.h), then the residual add (F32) or
// clamp(round_half_even(y * inv) + zero, 0, 255) (U8). Each step runs over the N vectors before
// the next, so the N dependency chains overlap (about 1.5x faster epilogues).
INLINE T512 void emit512(const int MODE, const int ACT, const int N, const cnx_qjob *e, int64_t i,
                         int64_t j, __mmask16 mk, const __m512i *acc, const cols512 *c) {
    if (MODE == CNX_QOUT_S32) {
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++) _mm512_mask_storeu_epi32((int32_t *)e->out + (i + v) * e->ldo + j, mk, acc[v]);
        return;
    }
    __m512 y[4];
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[v], c->corr));
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm512_mul_ps(y[v], c->scale);
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm512_add_ps(y[v], c->bias);
    cnx_act512_n(ACT, N, y);
    if (MODE == CNX_QOUT_F32) {
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++) {
            if (e->residual) y[v] = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, e->residual + (i + v) * e->ldr + j), y[v]);
            _mm512_mask_storeu_ps((float *)e->out + (i + v) * e->ldo + j, mk, y[v]);
        }
    } else {
        __m128i q[4];
        requant512_n(N, y, e->o_inv, e->o_zero, q);
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++) _mm_mask_storeu_epi8((uint8_t *)e->out + (i + v) * e->ldo + j, mk, q[v]);
    }
}

// The epilogue of MR rows of one 16-column vector position, in batches of up to 4 rows.
INLINE T512 void emit_rows512(const int MODE, const int ACT, const int MR, const cnx_qjob *e,
                              int64_t i, int64_t j, __mmask16 mk, const __m512i *acc,
                              const cols512 *c) {
#pragma clang loop unroll(full)
    for (int r = 0; r + 4 <= MR; r += 4) emit512(MODE, ACT, 4, e, i + r, j, mk, acc + r, c);
    const int r = MR / 4 * 4;
    if (MR - r == 3) emit512(MODE, ACT, 3, e, i + r, j, mk, acc + r, c);
    if (MR - r == 2) emit512(MODE, ACT, 2, e, i + r, j, mk, acc + r, c);
    if (MR - r == 1) emit512(MODE, ACT, 1, e, i + r, j, mk, acc + r, c);
}

// MARK: - Micro-tile: MR rows x NB panels of 16 columns, whole K

// profile: dot-product loop begins (Benchmarks/profile_int8.py counts these lines as the GEMM's
// dot products, the rest of a tile as its epilogue)
static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// kq full groups of 4 k read in place, then kt (0..3) tail bytes per row copied into a zeroed
// word, so no row is read past its k bytes (the packed B is zero past k).
// b: the first panel's group 0; the next panel starts bstride bytes later.
// Rows i..i+MR-1 and columns j0..j0+16 NB-1 of the output; vn = n - j0 columns are valid.
INLINE T512 void tile512(const int MR, const int NB, const int MODE, int64_t kq, int kt,
                         const uint8_t *a, int64_t lda, const int8_t *b, int64_t bstride,
                         const cnx_qjob *e, int64_t i, int64_t j0, int64_t vn) {
    __m512i acc[QGEMM_MR][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
        for (int q = 0; q < NB; q++) acc[r][q] = _mm512_setzero_si512();
    const uint8_t *ap = a;
    const int8_t *bp = b;
    for (int64_t g = 0; g < kq; g++, ap += 4, bp += 64) {
        __m512i bv[2];
#pragma clang loop unroll(full)
        for (int q = 0; q < NB; q++) bv[q] = _mm512_loadu_si512(bp + q * bstride);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512i av = _mm512_set1_epi32((int)load_u32(ap + r * lda));
#pragma clang loop unroll(full)
            for (int q = 0; q < NB; q++) acc[r][q] = _mm512_dpbusd_epi32(acc[r][q], av, bv[q]);
        }
    }
    if (kt) {
        __m512i bv[2];
#pragma clang loop unroll(full)
        for (int q = 0; q < NB; q++) bv[q] = _mm512_loadu_si512(bp + q * bstride);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            uint32_t w = 0;
            memcpy(&w, ap + r * lda, (size_t)kt);
            const __m512i av = _mm512_set1_epi32((int)w);
#pragma clang loop unroll(full)
            for (int q = 0; q < NB; q++) acc[r][q] = _mm512_dpbusd_epi32(acc[r][q], av, bv[q]);
        }
    }
    // profile: dot-product loop ends
#pragma clang loop unroll(full)
    for (int q = 0; q < NB; q++) {
        __m512i col[QGEMM_MR];
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) col[r] = acc[r][q];
        const __mmask16 mk = mask16(vn - 16 * q);
        if (MODE == CNX_QOUT_S32) {
            emit_rows512(MODE, 0, MR, e, i, j0 + 16 * q, mk, col, NULL);
        } else {
            const cols512 c = load_cols512(e, j0 + 16 * q, mk);
#define BODY(ACT) emit_rows512(MODE, ACT, MR, e, i, j0 + 16 * q, mk, col, &c)
            CNX_ACT_DISPATCH(e->act, BODY);
#undef BODY
        }
    }
}

typedef void (*tile512_fn)(int64_t kq, int kt, const uint8_t *a, int64_t lda, const int8_t *b,
                           int64_t bstride, const cnx_qjob *e, int64_t i, int64_t j0, int64_t vn);

#define DEF_TILE(MR, NB, MODE)                                                                   \
    static T512 void tile512_##MR##_##NB##_##MODE(int64_t kq, int kt, const uint8_t *a,           \
                                                   int64_t lda, const int8_t *b, int64_t bstride, \
                                                   const cnx_qjob *e, int64_t i, int64_t j0,      \
                                                   int64_t vn) {                                  \
        tile512(MR, NB, MODE, kq, kt, a, lda, b, bstride, e, i, j0, vn);                          \
    }
#define DEF_TILE_X(MR, NB, MODE) DEF_TILE(MR, NB, MODE)  // expands ROWS_n before pasting
#define NAME_X(MR, NB, MODE) tile512_##MR##_##NB##_##MODE
#define NAME(MR, NB, MODE) NAME_X(MR, NB, MODE)

// Row counts of the tiles: a remainder below QGEMM_MR is covered greedily by the smaller ones.
#define ROWS_1 QGEMM_MR
#define ROWS_2 7
#define ROWS_3 4
#define ROWS_4 2
#define ROWS_5 1
#define DEF_MODE(NB, MODE)                                                                       \
    DEF_TILE_X(ROWS_1, NB, MODE) DEF_TILE_X(ROWS_2, NB, MODE) DEF_TILE_X(ROWS_3, NB, MODE)       \
    DEF_TILE_X(ROWS_4, NB, MODE) DEF_TILE_X(ROWS_5, NB, MODE)
#define TILE_ROW(NB, MODE)                                                                       \
    { NAME(ROWS_1, NB, MODE), NAME(ROWS_2, NB, MODE), NAME(ROWS_3, NB, MODE),                    \
      NAME(ROWS_4, NB, MODE), NAME(ROWS_5, NB, MODE) }

DEF_MODE(1, 0) DEF_MODE(2, 0) DEF_MODE(1, 1) DEF_MODE(2, 1) DEF_MODE(1, 2) DEF_MODE(2, 2)

static const int ROWS[5] = {ROWS_1, ROWS_2, ROWS_3, ROWS_4, ROWS_5};
static const tile512_fn TILES[3][2][5] = {
    {TILE_ROW(1, 0), TILE_ROW(2, 0)},
    {TILE_ROW(1, 1), TILE_ROW(2, 1)},
    {TILE_ROW(1, 2), TILE_ROW(2, 2)},
};

// MARK: - Driver

void cnx_qgemm_run_avx512vnni(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                              const void *packed_b, const cnx_qjob *e) {
    const int64_t kq = k / 4, kqp = (k + 3) / 4, np = (n + 15) / 16;
    const int kt = (int)(k % 4);
    int64_t mc = (QGEMM_A_BLOCK / (k > 0 ? k : 1)) / QGEMM_MR * QGEMM_MR;
    if (mc < QGEMM_MR) mc = QGEMM_MR;
    const tile512_fn(*tiles)[5] = TILES[e->mode];
    for (int64_t i0 = 0; i0 < m; i0 += mc) {
        const int64_t i1 = m - i0 < mc ? m : i0 + mc;
        for (int64_t p = 0; p < np; p += 2) {
            const int nb = np - p >= 2 ? 2 : 1;
            const int8_t *b = (const int8_t *)packed_b + p * kqp * 64;
            const int64_t j0 = p * 16;
            for (int64_t i = i0; i < i1;) {
                const int64_t left = i1 - i;
                int t = 0;
                while (ROWS[t] > left) t++;
                tiles[nb - 1][t](kq, kt, a + i * lda, lda, b, kqp * 64, e, i, j0, n - j0);
                i += ROWS[t];
            }
        }
    }
}

// MARK: - Epilogue from an accumulator buffer

INLINE T512 void epilogue_rows512(const int MODE, const int ACT, int64_t m, int64_t n,
                                  const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mk = mask16(n - j);
        const cols512 c = load_cols512(e, j, mk);
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            __m512i v[4];
#pragma clang loop unroll(full)
            for (int r = 0; r < 4; r++) v[r] = _mm512_maskz_loadu_epi32(mk, acc + (i + r) * ldacc + j);
            emit512(MODE, ACT, 4, e, i, j, mk, v, &c);
        }
        for (; i < m; i++) {
            const __m512i v = _mm512_maskz_loadu_epi32(mk, acc + i * ldacc + j);
            emit512(MODE, ACT, 1, e, i, j, mk, &v, &c);
        }
    }
}

// One instantiation per output mode and activation.
T512 void cnx_qepilogue_avx512(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
#define F32(ACT) epilogue_rows512(CNX_QOUT_F32, ACT, m, n, acc, ldacc, e)
#define U8(ACT) epilogue_rows512(CNX_QOUT_U8, ACT, m, n, acc, ldacc, e)
    if (e->mode == CNX_QOUT_F32) CNX_ACT_DISPATCH(e->act, F32);
    else CNX_ACT_DISPATCH(e->act, U8);
#undef F32
#undef U8
}

// MARK: - Quantization

T512 void cnx_quantize_u8_avx512(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q) {
    int64_t i = 0;
    for (; i + 64 <= count; i += 64) {
        __m512 v[4];
        __m128i b[4];
#pragma clang loop unroll(full)
        for (int u = 0; u < 4; u++) v[u] = _mm512_loadu_ps(x + i + 16 * u);
        requant512_n(4, v, inv, zero, b);
#pragma clang loop unroll(full)
        for (int u = 0; u < 4; u++) _mm_storeu_si128((__m128i *)(q + i + 16 * u), b[u]);
    }
    for (; i < count; i += 16) {
        const __mmask16 mk = mask16(count - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m128i b;
        requant512_n(1, &v, inv, zero, &b);
        _mm_mask_storeu_epi8(q + i, mk, b);
    }
}

#endif  // x86
