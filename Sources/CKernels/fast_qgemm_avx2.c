// The ymm paths of the int8 kernels (cnx_qgemm.h): AVX-VNNI (VEX vpdpbusd on ymm) and AVX2
// without VNNI. Both read the same packed B as the AVX-512 path (groups of 64 bytes = 16 columns
// x 4 k) and share the epilogue, which works on 8 columns at a time.
//
// AVX-VNNI micro-tile: MR rows x 16 columns (one panel: two ymm of 8 columns), MR = 6:
// 12 accumulators + 2 weight registers + 1 broadcast of the 16 ymm registers.
//
// AVX2 without VNNI, and why nothing saturates. vpmaddubsw (u8 x s8 -> s16 pair sums) is NOT
// used: one pair sum reaches 255 * 127 * 2 = 64770 > 32767 (or 255 * -128 * 2 = -65280), and
// vpmaddubsw saturates it to 16 bits, so its result would depend on the data. Instead both
// operands are widened to 16 bits first and multiplied with vpmaddwd (s16 x s16 -> s32 pair sums):
//   - weights: vpmovsxbw sign-extends 16 bytes of a packed group (4 columns x 4 k) to 16 words;
//   - activations: the 4 bytes a0..a3 of a row's group are broadcast and vpshufb zero-extends
//     them to the words (a0, a1, a2, a3) repeated, which lines up with each column's 4 words;
//   - vpmaddwd gives, per int32 lane, a0 w0 + a1 w1 (or a2 w2 + a3 w3): |.| <= 2 * 255 * 128 =
//     65280, exact in int32 (vpmaddwd only overflows for two (-32768)^2 products, impossible with
//     operands in [0, 255] and [-128, 127]); vpaddd accumulates mod 2^32 like vpdpbusd.
// So a lane holds half of one column's 4-k dot product; after the K loop vphaddd adds the two
// halves and vpermq restores the column order. Micro-tile: 2 rows x 16 columns (4 x 2
// accumulators, 4 widened weight registers, the broadcast and the shuffle control).
#define CNX_QGEMM_INTERNAL
#include "cnx_qgemm.h"

#include "activation.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <immintrin.h>
#include <string.h>

#define T256 __attribute__((target("avx2,fma")))
#define TVNNI __attribute__((target("avx2,fma,avxvnni")))
#define INLINE static inline __attribute__((always_inline))

#ifndef QGEMM_A_BLOCK
#define QGEMM_A_BLOCK (192 * 1024)  // bytes of A per row block
#endif

// MARK: - Epilogue

// Lanes [0, valid) set, valid clamped to [0, 8].
INLINE T256 __m256i mask8(int64_t valid) {
    if (valid < 0) valid = 0;
    if (valid > 8) valid = 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The per-column terms of 8 columns from j: a_zero colsum, a_scale w_scale, bias.
typedef struct {
    __m256i corr;
    __m256 scale, bias;
} cols256;

INLINE T256 cols256 load_cols256(const cnx_qjob *e, int64_t j, int64_t valid) {
    const __m256i mk = mask8(valid);
    cols256 c;
    c.corr = e->colsum ? _mm256_mullo_epi32(_mm256_set1_epi32(e->a_zero), _mm256_maskload_epi32(e->colsum + j, mk))
                       : _mm256_setzero_si256();
    c.scale = e->w_scale ? _mm256_mul_ps(_mm256_set1_ps(e->a_scale), _mm256_maskload_ps(e->w_scale + j, mk))
                         : _mm256_set1_ps(e->a_scale);
    c.bias = e->bias ? _mm256_maskload_ps(e->bias + j, mk) : _mm256_setzero_ps();
    return c;
}

// clamp(round_half_even(y * inv) + zero, 0, 255) as 8 bytes in the low half. max(v, 0) returns
// its second operand (0) for NaN, as the reference's !(v >= 0) test does.
INLINE T256 __m128i requant256(__m256 y, float inv, int32_t zero) {
    __m256 v = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(inv)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_add_ps(v, _mm256_set1_ps((float)zero));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
    const __m256i q = _mm256_cvttps_epi32(v);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    return _mm_packus_epi16(w, w);
}

// Writes N vectors of output, rows i..i+N-1 at columns j..j+7 (of which `valid` exist), from
// their accumulators: y = (float)(acc - corr) * scale + bias (two roundings, as the reference),
// the activation ACT (activation.h), then the residual add (F32) or the requantization (U8).
// Each step runs over the N vectors before the next, so the N dependency chains overlap.
INLINE T256 void emit256(const int MODE, const int ACT, const int N, const cnx_qjob *e, int64_t i,
                         int64_t j, int64_t valid, const __m256i *acc, const cols256 *c) {
    const int full = valid >= 8;
    const __m256i mk = mask8(valid);
    if (MODE == CNX_QOUT_S32) {
#pragma clang loop unroll(full)
        for (int v = 0; v < N; v++) {
            int32_t *o = (int32_t *)e->out + (i + v) * e->ldo + j;
            if (full) _mm256_storeu_si256((__m256i *)o, acc[v]);
            else _mm256_maskstore_epi32(o, mk, acc[v]);
        }
        return;
    }
    __m256 y[4];
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[v], c->corr));
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm256_mul_ps(y[v], c->scale);
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) y[v] = _mm256_add_ps(y[v], c->bias);
    cnx_act256_n(ACT, N, y);
#pragma clang loop unroll(full)
    for (int v = 0; v < N; v++) {
        if (MODE == CNX_QOUT_F32) {
            float *o = (float *)e->out + (i + v) * e->ldo + j;
            if (e->residual) {
                const float *r = e->residual + (i + v) * e->ldr + j;
                y[v] = _mm256_add_ps(full ? _mm256_loadu_ps(r) : _mm256_maskload_ps(r, mk), y[v]);
            }
            if (full) _mm256_storeu_ps(o, y[v]);
            else _mm256_maskstore_ps(o, mk, y[v]);
        } else {
            const __m128i q = requant256(y[v], e->o_inv, e->o_zero);
            uint8_t *o = (uint8_t *)e->out + (i + v) * e->ldo + j;
            if (full) {
                _mm_storel_epi64((__m128i *)o, q);
            } else {
                uint8_t tmp[16];
                _mm_storeu_si128((__m128i *)tmp, q);
                memcpy(o, tmp, (size_t)valid);
            }
        }
    }
}

// The epilogue of MR rows x 16 columns (two vectors of 8 per row) held in acc, in batches of up
// to 4 rows per 8-column position.
INLINE T256 void emit_tile256(const int MR, const int MODE, const cnx_qjob *e, int64_t i,
                              int64_t j0, int64_t vn, __m256i acc[][2]) {
#pragma clang loop unroll(full)
    for (int h = 0; h < 2; h++) {
        const int64_t j = j0 + 8 * h, valid = vn - 8 * h;
        if (valid <= 0) break;
        __m256i col[8];
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) col[r] = acc[r][h];
        cols256 c;
        if (MODE != CNX_QOUT_S32) c = load_cols256(e, j, valid);
        const int act = MODE != CNX_QOUT_S32 ? e->act : CNX_ACT_NONE;
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r += 4) {
            const int n = MR - r < 4 ? MR - r : 4;
#define EMIT_ACT(ACT) emit256(MODE, ACT, n_, e, i + r, j, valid, col + r, &c)
#define EMIT(N)                                                                    \
    do {                                                                           \
        const int n_ = N;                                                          \
        CNX_ACT_DISPATCH(act, EMIT_ACT);                                           \
    } while (0)
            if (n == 4) EMIT(4);
            else if (n == 3) EMIT(3);
            else if (n == 2) EMIT(2);
            else EMIT(1);
#undef EMIT
#undef EMIT_ACT
        }
    }
}

// profile: dot-product loop begins (Benchmarks/profile_int8.py)
static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

// The activation word of row r for the group at ap: read in place for full groups, the kt tail
// bytes copied into a zeroed word otherwise (never reading past the row).
static inline uint32_t tail_u32(const uint8_t *p, int kt) {
    uint32_t v = 0;
    memcpy(&v, p, (size_t)kt);
    return v;
}

// MARK: - AVX-VNNI micro-tile: MR rows x 16 columns, whole K

// One group (4 k) of the tile: full groups read in place, the tail group (TAIL) from a copy.
INLINE TVNNI void group_vnni(const int MR, const int TAIL, __m256i acc[][2], const uint8_t *ap,
                             int64_t lda, const int8_t *bp, int kt) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)bp);
    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + 32));
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        const __m256i av = _mm256_set1_epi32((int)(TAIL ? tail_u32(ap + r * lda, kt) : load_u32(ap + r * lda)));
        acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], av, b0);
        acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], av, b1);
    }
}

INLINE TVNNI void tile_vnni(const int MR, const int MODE, int64_t kq, int kt, const uint8_t *a,
                            int64_t lda, const int8_t *b, const cnx_qjob *e, int64_t i,
                            int64_t j0, int64_t vn) {
    __m256i acc[CNX_QMR_AVX_VNNI][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t g = 0; g < kq; g++) group_vnni(MR, 0, acc, a + 4 * g, lda, b + 64 * g, 0);
    if (kt) group_vnni(MR, 1, acc, a + 4 * kq, lda, b + 64 * kq, kt);
    emit_tile256(MR, MODE, e, i, j0, vn, acc);
}

// MARK: - AVX2 micro-tile: MR rows x 16 columns, whole K (see the top of the file)

// One group (4 k) of the tile; `spread` zero-extends bytes 0..3 of each 128-bit lane to the words
// (b0, b1, b2, b3, b0, b1, b2, b3).
INLINE T256 void group_avx2(const int MR, const int TAIL, __m256i acc[][4], __m256i spread,
                            const uint8_t *ap, int64_t lda, const int8_t *bp, int kt) {
    __m256i w[4];  // w[q]: columns 4q..4q+3, each as its 4 k words
#pragma clang loop unroll(full)
    for (int q = 0; q < 4; q++) w[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + 16 * q)));
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        const uint32_t word = TAIL ? tail_u32(ap + r * lda, kt) : load_u32(ap + r * lda);
        const __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32((int)word), spread);
#pragma clang loop unroll(full)
        for (int q = 0; q < 4; q++) acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(x, w[q]));
    }
}

INLINE T256 void tile_avx2(const int MR, const int MODE, int64_t kq, int kt, const uint8_t *a,
                           int64_t lda, const int8_t *b, const cnx_qjob *e, int64_t i,
                           int64_t j0, int64_t vn) {
    const __m256i spread = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1,
                                            0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1);
    __m256i acc[CNX_QMR_AVX2][4];  // acc[r][q]: columns 4q..4q+3, two lanes (k pairs) per column
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_si256();
    for (int64_t g = 0; g < kq; g++) group_avx2(MR, 0, acc, spread, a + 4 * g, lda, b + 64 * g, 0);
    if (kt) group_avx2(MR, 1, acc, spread, a + 4 * kq, lda, b + 64 * kq, kt);
    // profile: dot-product loop ends
    // hadd(acc0, acc1) = [c0 c1 c4 c5 | c2 c3 c6 c7] in 64-bit pairs; vpermq (0, 2, 1, 3) sorts.
    __m256i out[CNX_QMR_AVX2][2];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        out[r][0] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][0], acc[r][1]), 0xD8);
        out[r][1] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][2], acc[r][3]), 0xD8);
    }
    emit_tile256(MR, MODE, e, i, j0, vn, out);
}

typedef void (*tile256_fn)(int64_t kq, int kt, const uint8_t *a, int64_t lda, const int8_t *b,
                           const cnx_qjob *e, int64_t i, int64_t j0, int64_t vn);

#define DEF_TILE(KIND, ATTR, MR, MODE)                                                           \
    static ATTR void KIND##_##MR##_##MODE(int64_t kq, int kt, const uint8_t *a, int64_t lda,      \
                                          const int8_t *b, const cnx_qjob *e, int64_t i,          \
                                          int64_t j0, int64_t vn) {                               \
        tile_##KIND(MR, MODE, kq, kt, a, lda, b, e, i, j0, vn);                                   \
    }
#define DEF_VNNI(MODE)                                                                           \
    DEF_TILE(vnni, TVNNI, 6, MODE) DEF_TILE(vnni, TVNNI, 4, MODE) DEF_TILE(vnni, TVNNI, 2, MODE)  \
    DEF_TILE(vnni, TVNNI, 1, MODE)
#define DEF_AVX2(MODE) DEF_TILE(avx2, T256, 2, MODE) DEF_TILE(avx2, T256, 1, MODE)
DEF_VNNI(0) DEF_VNNI(1) DEF_VNNI(2)
DEF_AVX2(0) DEF_AVX2(1) DEF_AVX2(2)

static const int ROWS_VNNI[4] = {6, 4, 2, 1};
static const tile256_fn TILES_VNNI[3][4] = {
    {vnni_6_0, vnni_4_0, vnni_2_0, vnni_1_0},
    {vnni_6_1, vnni_4_1, vnni_2_1, vnni_1_1},
    {vnni_6_2, vnni_4_2, vnni_2_2, vnni_1_2},
};
static const int ROWS_AVX2[2] = {2, 1};
static const tile256_fn TILES_AVX2[3][2] = {
    {avx2_2_0, avx2_1_0},
    {avx2_2_1, avx2_1_1},
    {avx2_2_2, avx2_1_2},
};

// MARK: - Driver: row blocks -> 16-column panels -> row tiles (as the AVX-512 path)

static void run256(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                   const void *packed_b, const cnx_qjob *e, const tile256_fn *tiles,
                   const int *rows, int mr) {
    const int64_t kq = k / 4, kqp = (k + 3) / 4, np = (n + 15) / 16;
    const int kt = (int)(k % 4);
    int64_t mc = (QGEMM_A_BLOCK / (k > 0 ? k : 1)) / mr * mr;
    if (mc < mr) mc = mr;
    for (int64_t i0 = 0; i0 < m; i0 += mc) {
        const int64_t i1 = m - i0 < mc ? m : i0 + mc;
        for (int64_t p = 0; p < np; p++) {
            const int8_t *b = (const int8_t *)packed_b + p * kqp * 64;
            const int64_t j0 = p * 16;
            for (int64_t i = i0; i < i1;) {
                const int64_t left = i1 - i;
                int t = 0;
                while (rows[t] > left) t++;
                tiles[t](kq, kt, a + i * lda, lda, b, e, i, j0, n - j0);
                i += rows[t];
            }
        }
    }
}

void cnx_qgemm_run_avxvnni(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                           const void *packed_b, const cnx_qjob *e) {
    run256(m, n, k, a, lda, packed_b, e, TILES_VNNI[e->mode], ROWS_VNNI, CNX_QMR_AVX_VNNI);
}

void cnx_qgemm_run_avx2(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, const cnx_qjob *e) {
    run256(m, n, k, a, lda, packed_b, e, TILES_AVX2[e->mode], ROWS_AVX2, CNX_QMR_AVX2);
}

// MARK: - Epilogue from an accumulator buffer

INLINE T256 void epilogue_rows256(const int MODE, const int ACT, int64_t m, int64_t n,
                                  const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
    for (int64_t j = 0; j < n; j += 8) {
        const int64_t valid = n - j;
        const __m256i mk = mask8(valid);
        const cols256 c = load_cols256(e, j, valid);
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            __m256i v[4];
#pragma clang loop unroll(full)
            for (int r = 0; r < 4; r++) {
                const int32_t *p = acc + (i + r) * ldacc + j;
                v[r] = valid >= 8 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32(p, mk);
            }
            emit256(MODE, ACT, 4, e, i, j, valid, v, &c);
        }
        for (; i < m; i++) {
            const int32_t *p = acc + i * ldacc + j;
            const __m256i v = valid >= 8 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32(p, mk);
            emit256(MODE, ACT, 1, e, i, j, valid, &v, &c);
        }
    }
}

// One instantiation per output mode and activation.
T256 void cnx_qepilogue_avx2(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
#define F32(ACT) epilogue_rows256(CNX_QOUT_F32, ACT, m, n, acc, ldacc, e)
#define U8(ACT) epilogue_rows256(CNX_QOUT_U8, ACT, m, n, acc, ldacc, e)
    if (e->mode == CNX_QOUT_F32) CNX_ACT_DISPATCH(e->act, F32);
    else CNX_ACT_DISPATCH(e->act, U8);
#undef F32
#undef U8
}

// MARK: - Quantization

T256 void cnx_quantize_u8_avx2(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q) {
    int64_t i = 0;
    for (; i + 32 <= count; i += 32) {
        const __m128i q0 = requant256(_mm256_loadu_ps(x + i), inv, zero);
        const __m128i q1 = requant256(_mm256_loadu_ps(x + i + 8), inv, zero);
        const __m128i q2 = requant256(_mm256_loadu_ps(x + i + 16), inv, zero);
        const __m128i q3 = requant256(_mm256_loadu_ps(x + i + 24), inv, zero);
        _mm_storeu_si128((__m128i *)(q + i), _mm_unpacklo_epi64(q0, q1));
        _mm_storeu_si128((__m128i *)(q + i + 16), _mm_unpacklo_epi64(q2, q3));
    }
    for (; i < count; i += 8) {
        const int64_t valid = count - i;
        if (valid >= 8) {
            _mm_storel_epi64((__m128i *)(q + i), requant256(_mm256_loadu_ps(x + i), inv, zero));
        } else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, requant256(_mm256_maskload_ps(x + i, mask8(valid)), inv, zero));
            memcpy(q + i, tmp, (size_t)valid);
        }
    }
}

#endif  // x86
