// arm64 (NEON) int8 kernels (cnx_qgemm.h semantics): the u8 x s8 -> s32 GEMM over the packed B
// of cnx_qgemm_pack_b (x86 VNNI's layout: panels of 16 columns, groups of 64 bytes = for each of
// the 16 columns its 4 consecutive k), its epilogues and the quantizer. Three GEMM paths:
//
//   i8mm     SUDOT by element (FEAT_I8MM): signed B x unsigned A, exactly the u8 x s8 product.
//            One 16-byte load of a group is 4 columns x 4 k, the operand layout of the dot
//            product; the A operand is one 4-byte group of a row, picked by the lane index from
//            16 bytes of the row loaded once.
//   dotprod  SDOT by element (FEAT_DotProd), which multiplies s8 by s8 only. The activations are
//            offset into s8, a - 128 = a XOR 0x80 (one EOR per 16 bytes of a row), so the GEMM
//            computes sum (a - 128) b = sum a b - 128 colsum(B), and adding 128 colsum after the
//            K loop restores sum a b. The column sums come from the panel's own bytes (SDOT against
//            ones, once per panel and row block), not from the packed buffer's tail, so any panel
//            pointer works. All in int32 arithmetic wrapping mod 2^32, as the reference: the
//            identity holds bit for bit.
//   neon     no dot product (Cortex-A53/A72 class): LD4 de-interleaves a group into its 4 k
//            rows of 16 columns (a transpose for free), SXTL widens B to s16, UXTL widens A's 4
//            bytes to s16 (u8 fits), and SMLAL / SMLAL2 by element accumulate s16 x s16 products
//            (exact, |a b| <= 255 * 128) into int32, wrapping like the others.
//
// Micro-tiles: 5 rows x 16 columns for i8mm and dotprod (20 accumulators + 4 B + 5 A = 29 of 32
// vector registers), 4 x 16 for neon (16 accumulators, 2 widened B halves, the LD4 quad, 4 A).
// The tile runs the whole K, then its int32 values go through the epilogue (stored as int32, or
// dequantized -> activation -> float / requantized u8) from a 320-byte copy on the stack.
// The epilogue performs the reference's float operations in its order, vector for scalar, without
// contraction, so it is bit-identical to it except for the activation (the vector GELU of
// neon_internal.h); the requantization rounds with FRINTN (ties to even) and clamps with FMAXNM
// (NaN -> 0) and FMIN, as the reference's float clamps.
#include "neon_internal.h"

#if CNX_ARM64

#include <string.h>

// The epilogue must not fuse its multiply and add (the reference does not).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QTN 16  // columns per tile: one panel
#ifndef NEON_QGEMM_A_BLOCK
#define NEON_QGEMM_A_BLOCK (128 * 1024)  // bytes of A per row block
#endif

// MARK: - Epilogue

static inline int32x4_t ld_s32_partial(const int32_t *p, int64_t n) {
    return vreinterpretq_s32_f32(neon_load_partial(p, n));
}

static inline void st_s32_partial(int32_t *p, int32x4_t v, int64_t n) {
    neon_store_partial(p, vreinterpretq_f32_s32(v), n);
}

// clamp(round_half_even(y * inv) + zero, 0, 255), in the reference's float steps.
static inline uint32x4_t requant(float32x4_t y, float inv, float zero) {
    float32x4_t v = vrndnq_f32(vmulq_n_f32(y, inv));
    v = vaddq_f32(v, vdupq_n_f32(zero));
    v = vmaxnmq_f32(v, vdupq_n_f32(0.0f));  // NaN (always quiet here) -> 0
    v = vminq_f32(v, vdupq_n_f32(255.0f));
    return vcvtq_u32_f32(v);
}

static inline void st_u8_partial(uint8_t *p, uint32x4_t v, int64_t n) {
    const uint8x8_t b = vmovn_u16(vcombine_u16(vmovn_u32(v), vmovn_u32(v)));
    uint8_t t[8];
    vst1_u8(t, b);
    for (int64_t i = 0; i < n && i < 4; i++) p[i] = t[i];
}

// Outputs of rows i0 .. i0 + rows - 1, columns j0 .. j0 + ncols - 1, from the int32 values
// acc[r][jj] (stride ldacc), r and jj counted from the block's corner.
static void emit_block(const cnx_qjob *e, const int32_t *acc, int64_t ldacc, int64_t rows,
                       int64_t i0, int64_t j0, int64_t ncols) {
    for (int64_t jj = 0; jj < ncols; jj += 4) {
        const int64_t nv = ncols - jj, j = j0 + jj;
        if (e->mode == CNX_QOUT_S32) {
            for (int64_t r = 0; r < rows; r++)
                st_s32_partial((int32_t *)e->out + (i0 + r) * e->ldo + j, ld_s32_partial(acc + r * ldacc + jj, nv), nv);
            continue;
        }
        const int32x4_t corr = e->colsum ? vmulq_s32(vdupq_n_s32(e->a_zero), ld_s32_partial(e->colsum + j, nv)) : vdupq_n_s32(0);
        const float32x4_t scale = e->w_scale ? vmulq_f32(vdupq_n_f32(e->a_scale), neon_load_partial(e->w_scale + j, nv))
                                             : vdupq_n_f32(e->a_scale);
        const float32x4_t bias = e->bias ? neon_load_partial(e->bias + j, nv) : vdupq_n_f32(0.0f);
        for (int64_t r = 0; r < rows; r++) {
            float32x4_t y = vcvtq_f32_s32(vsubq_s32(ld_s32_partial(acc + r * ldacc + jj, nv), corr));
            y = vmulq_f32(y, scale);
            y = vaddq_f32(y, bias);
            y = neon_act(y, e->act);
            const int64_t i = i0 + r;
            if (e->mode == CNX_QOUT_F32) {
                if (e->residual) y = vaddq_f32(neon_load_partial(e->residual + i * e->ldr + j, nv), y);
                neon_store_partial((float *)e->out + i * e->ldo + j, y, nv);
            } else {
                st_u8_partial((uint8_t *)e->out + i * e->ldo + j, requant(y, e->o_inv, (float)e->o_zero), nv);
            }
        }
    }
}

void cnx_qepilogue_neon(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc, const cnx_qjob *e) {
    emit_block(e, acc, ldacc, m, 0, 0, n);
}

void cnx_quantize_u8_neon(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q) {
    const float z = (float)zero;
    int64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        uint32x4_t v[4];
        for (int u = 0; u < 4; u++) v[u] = requant(vld1q_f32(x + i + 4 * u), inv, z);
        const uint16x8_t lo = vcombine_u16(vmovn_u32(v[0]), vmovn_u32(v[1]));
        const uint16x8_t hi = vcombine_u16(vmovn_u32(v[2]), vmovn_u32(v[3]));
        vst1q_u8(q + i, vcombine_u8(vmovn_u16(lo), vmovn_u16(hi)));
    }
    for (; i < count; i += 4) st_u8_partial(q + i, requant(neon_load_partial(x + i, count - i), inv, z), count - i);
}

// MARK: - Tiles

// A row's bytes [k0, k0 + len) into a zeroed 16-byte buffer: the K tail, never read past k.
static inline void tail_bytes(uint8_t dst[16], const uint8_t *src, int64_t len) {
    memset(dst, 0, 16);
    memcpy(dst, src, (size_t)len);
}

// One group of 4 k for the dot-product paths: 4 column quads of B (16 bytes each) times lane L
// (the group's 4 bytes) of every row's A vector.
#define DOT_GROUP(DOT, L)                                                                       \
    do {                                                                                        \
        const int8x16_t b0 = vld1q_s8(bg), b1 = vld1q_s8(bg + 16), b2 = vld1q_s8(bg + 32),      \
                        b3 = vld1q_s8(bg + 48);                                                 \
        CNX_UNROLL                                                                              \
        for (int r = 0; r < MR; r++) {                                                          \
            acc[r][0] = DOT(acc[r][0], b0, av[r], L);                                           \
            acc[r][1] = DOT(acc[r][1], b1, av[r], L);                                           \
            acc[r][2] = DOT(acc[r][2], b2, av[r], L);                                           \
            acc[r][3] = DOT(acc[r][3], b3, av[r], L);                                           \
        }                                                                                       \
        bg += 64;                                                                               \
    } while (0)

// The dot-product tile body, for SDOT (A offset by XOR 0x80) or SUDOT (A as it is). Writes the
// MR x 16 int32 tile to t. kqp: groups of the panel (k zero-padded to 4).
#define DOT_TILE_BODY(DOT, AVTYPE, LOAD_A)                                                      \
    int32x4_t acc[CNX_QMR_DOT][4];                                                                  \
    CNX_UNROLL                                                                                  \
    for (int r = 0; r < MR; r++)                                                                \
        CNX_UNROLL                                                                              \
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_s32(0);                                 \
    const int8_t *bg = b;                                                                       \
    int64_t k0 = 0;                                                                             \
    for (; k0 + 16 <= k; k0 += 16) {                                                            \
        AVTYPE av[CNX_QMR_DOT];                                                                     \
        CNX_UNROLL                                                                              \
        for (int r = 0; r < MR; r++) av[r] = LOAD_A(a + r * lda + k0);                          \
        DOT_GROUP(DOT, 0);                                                                      \
        DOT_GROUP(DOT, 1);                                                                      \
        DOT_GROUP(DOT, 2);                                                                      \
        DOT_GROUP(DOT, 3);                                                                      \
    }                                                                                           \
    if (k0 < k) {                                                                               \
        const int64_t groups = (k - k0 + 3) / 4;                                                \
        AVTYPE av[CNX_QMR_DOT];                                                                     \
        CNX_UNROLL                                                                              \
        for (int r = 0; r < MR; r++) {                                                          \
            uint8_t tb[16];                                                                     \
            tail_bytes(tb, a + r * lda + k0, k - k0);                                           \
            av[r] = LOAD_A(tb);                                                                 \
        }                                                                                       \
        DOT_GROUP(DOT, 0);                                                                      \
        if (groups > 1) DOT_GROUP(DOT, 1);                                                      \
        if (groups > 2) DOT_GROUP(DOT, 2);                                                      \
        if (groups > 3) DOT_GROUP(DOT, 3);                                                      \
    }

#define LOAD_A_OFFSET(p) vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80)))
#define LOAD_A_PLAIN(p) vld1q_u8(p)

CNX_INLINE CNX_TARGET_DOTPROD void tile_dotprod(const int MR, int64_t k, const uint8_t *a,
                                                int64_t lda, const int8_t *b,
                                                const int32_t *colsum, int32_t *t) {
    DOT_TILE_BODY(vdotq_laneq_s32, int8x16_t, LOAD_A_OFFSET)
    // sum a b = sum (a - 128) b + 128 colsum, mod 2^32.
    int32x4_t corr[4];
    CNX_UNROLL
    for (int q = 0; q < 4; q++) corr[q] = vshlq_n_s32(vld1q_s32(colsum + 4 * q), 7);
    CNX_UNROLL
    for (int r = 0; r < MR; r++)
        CNX_UNROLL
        for (int q = 0; q < 4; q++) vst1q_s32(t + r * QTN + 4 * q, vaddq_s32(acc[r][q], corr[q]));
}

// The 16 column sums of a panel (kqp groups), by SDOT against ones: the correction of the dotprod
// path, computed from the panel's own bytes (so it holds for any packed B the caller passes).
static CNX_TARGET_DOTPROD void panel_col_sums(const int8_t *b, int64_t kqp, int32_t sums[QTN]) {
    const int8x16_t ones = vdupq_n_s8(1);
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int64_t g = 0; g < kqp; g++, b += 64)
        for (int q = 0; q < 4; q++) acc[q] = vdotq_s32(acc[q], vld1q_s8(b + 16 * q), ones);
    for (int q = 0; q < 4; q++) vst1q_s32(sums + 4 * q, acc[q]);
}

CNX_INLINE CNX_TARGET_I8MM void tile_i8mm(const int MR, int64_t k, const uint8_t *a, int64_t lda,
                                          const int8_t *b, const int32_t *colsum, int32_t *t) {
    (void)colsum;
    DOT_TILE_BODY(vsudotq_laneq_s32, uint8x16_t, LOAD_A_PLAIN)
    CNX_UNROLL
    for (int r = 0; r < MR; r++)
        CNX_UNROLL
        for (int q = 0; q < 4; q++) vst1q_s32(t + r * QTN + 4 * q, acc[r][q]);
}

// The widening path: k-row T (0..3) of an LD4'd group times lane T of every row's widened A.
#define MLAL_ROW(T)                                                                             \
    do {                                                                                        \
        const int16x8_t lo = vmovl_s8(vget_low_s8(bq.val[T])), hi = vmovl_high_s8(bq.val[T]);   \
        CNX_UNROLL                                                                              \
        for (int r = 0; r < MR; r++) {                                                          \
            acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(lo), av[r], T);                  \
            acc[r][1] = vmlal_high_lane_s16(acc[r][1], lo, av[r], T);                           \
            acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(hi), av[r], T);                  \
            acc[r][3] = vmlal_high_lane_s16(acc[r][3], hi, av[r], T);                           \
        }                                                                                       \
    } while (0)

// The 4 bytes of a group, zero-extended to 16 bits (u8 fits s16).
static inline int16x4_t widen_group(uint32_t bytes) {
    return vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)))));
}

// len (1..4, a constant in the main loop) bytes of a row, zero-padded.
static inline uint32_t load_group(const uint8_t *p, int64_t len) {
    uint32_t v = 0;
    memcpy(&v, p, (size_t)len);
    return v;
}

#define MLAL_GROUP()                                                                            \
    do {                                                                                        \
        const int8x16x4_t bq = vld4q_s8(bg);                                                    \
        MLAL_ROW(0);                                                                            \
        MLAL_ROW(1);                                                                            \
        MLAL_ROW(2);                                                                            \
        MLAL_ROW(3);                                                                            \
    } while (0)

// One group (4 k) per iteration: the LD4 quad, its 8 widened halves, 4 x MR accumulators and MR
// A groups stay within the 32 registers (two groups at once made clang hoist all 16 widenings
// and spill).
CNX_INLINE void tile_neon(const int MR, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b,
                          const int32_t *colsum, int32_t *t) {
    (void)colsum;
    int32x4_t acc[CNX_QMR_NEON][4];
    CNX_UNROLL
    for (int r = 0; r < MR; r++)
        CNX_UNROLL
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_s32(0);
    const int8_t *bg = b;
    int64_t k0 = 0;
    for (; k0 + 4 <= k; k0 += 4, bg += 64) {
        int16x4_t av[CNX_QMR_NEON];
        CNX_UNROLL
        for (int r = 0; r < MR; r++) av[r] = widen_group(load_group(a + r * lda + k0, 4));
        MLAL_GROUP();
    }
    if (k0 < k) {
        int16x4_t av[CNX_QMR_NEON];
        CNX_UNROLL
        for (int r = 0; r < MR; r++) av[r] = widen_group(load_group(a + r * lda + k0, k - k0));
        MLAL_GROUP();
    }
    CNX_UNROLL
    for (int r = 0; r < MR; r++)
        CNX_UNROLL
        for (int q = 0; q < 4; q++) vst1q_s32(t + r * QTN + 4 * q, acc[r][q]);
}

typedef void (*qtile_fn)(int64_t k, const uint8_t *a, int64_t lda, const int8_t *b,
                         const int32_t *colsum, int32_t *t);
#define QTILE(KIND, ATTR, R)                                                                    \
    static ATTR void KIND##_##R(int64_t k, const uint8_t *a, int64_t lda, const int8_t *b,     \
                                const int32_t *colsum, int32_t *t) {                            \
        tile_##KIND(R, k, a, lda, b, colsum, t);                                                \
    }
QTILE(i8mm, CNX_TARGET_I8MM, 1) QTILE(i8mm, CNX_TARGET_I8MM, 2) QTILE(i8mm, CNX_TARGET_I8MM, 3)
QTILE(i8mm, CNX_TARGET_I8MM, 4) QTILE(i8mm, CNX_TARGET_I8MM, 5)
QTILE(dotprod, CNX_TARGET_DOTPROD, 1) QTILE(dotprod, CNX_TARGET_DOTPROD, 2)
QTILE(dotprod, CNX_TARGET_DOTPROD, 3) QTILE(dotprod, CNX_TARGET_DOTPROD, 4)
QTILE(dotprod, CNX_TARGET_DOTPROD, 5)
QTILE(neon, , 1) QTILE(neon, , 2) QTILE(neon, , 3) QTILE(neon, , 4)

static const qtile_fn TILES_I8MM[CNX_QMR_DOT + 1] = {0, i8mm_1, i8mm_2, i8mm_3, i8mm_4, i8mm_5};
static const qtile_fn TILES_DOTPROD[CNX_QMR_DOT + 1] = {0, dotprod_1, dotprod_2, dotprod_3, dotprod_4, dotprod_5};
static const qtile_fn TILES_NEON[CNX_QMR_NEON + 1] = {0, neon_1, neon_2, neon_3, neon_4};

// MARK: - Driver

void cnx_qgemm_run_neon(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, const cnx_qjob *e, int level) {
    if (m <= 0 || n <= 0) return;
    const qtile_fn *tiles = level == CNX_QISA_I8MM ? TILES_I8MM : level == CNX_QISA_DOTPROD ? TILES_DOTPROD : TILES_NEON;
    const int mr_max = level == CNX_QISA_NEON ? CNX_QMR_NEON : CNX_QMR_DOT;
    const int64_t kqp = (k + 3) / 4, np = (n + QTN - 1) / QTN;
    int32_t colsum[QTN] = {0};
    // Row blocks whose A stays in L2 while every panel of B passes over it.
    int64_t mc = (NEON_QGEMM_A_BLOCK / (k > 0 ? k : 1)) / mr_max * mr_max;
    if (mc < mr_max) mc = mr_max;
    int32_t t[CNX_QMR_DOT * QTN];
    for (int64_t i0 = 0; i0 < m; i0 += mc) {
        const int64_t i1 = m - i0 < mc ? m : i0 + mc;
        for (int64_t p = 0; p < np; p++) {
            const int8_t *b = (const int8_t *)packed_b + p * kqp * 64;
            const int64_t j0 = p * QTN, vn = n - j0 < QTN ? n - j0 : QTN;
            if (level == CNX_QISA_DOTPROD) panel_col_sums(b, kqp, colsum);
            for (int64_t i = i0; i < i1;) {
                const int mr = i1 - i < mr_max ? (int)(i1 - i) : mr_max;
                tiles[mr](k, a + i * lda, lda, b, colsum, t);
                emit_block(e, t, QTN, mr, i, j0, vn);
                i += mr;
            }
        }
    }
}

#endif  // CNX_ARM64
