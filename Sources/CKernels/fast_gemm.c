// GEMM with a fused epilogue (bias, activation, residual) for the pointwise layers. The
// activations (scalar and vector forms) are in activation.h.
//
// Layout: B is packed once into panels of 32 columns, K-major inside a panel, so a K block of a
// panel is one contiguous run. A is read in place (rows contiguous, leading dimension lda).
// Loop nest of the SIMD paths, per call:
//   rows in blocks of MC -> K in blocks of at most KC -> 32-column panels -> micro-tiles of MR rows.
// The row block's MR-row tiles stream their A rows past the panel's K block, which comes from
// L1 or L2 (prefetched a few K steps ahead); the first tile of a panel prefetches the next
// panel's K block into L2 (B comes from L3 or memory when the layer is large and m small).
// Partial sums of earlier K blocks live in C. The bias (and a residual not behind an
// activation) initialise the accumulators; the activation, and a
// residual after it, run after the last K block on the tile while it is in registers or L1.
#include "cnx_fast.h"
#include "neon_internal.h"

#include "activation.h"
#include "gemm_tile512.h"
#include "thread_scratch.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#define CNX_X86 1
#include <immintrin.h>
#endif

#define PANEL CNX_GEMM_PANEL

// MARK: - Scalar reference

size_t cnx_gemm_packed_b_floats(int64_t k, int64_t n) {
    if (k <= 0 || n <= 0) return 0;
    return (size_t)((n + PANEL - 1) / PANEL) * PANEL * (size_t)k;
}

void cnx_gemm_pack_b(const float *b, int64_t k, int64_t n, float *packed) {
    int64_t panels = (n + PANEL - 1) / PANEL;
    for (int64_t p = 0; p < panels; p++) {
        int64_t j0 = p * PANEL, w = n - j0 < PANEL ? n - j0 : PANEL;
        float *dst = packed + p * PANEL * k;
        for (int64_t kk = 0; kk < k; kk++) {
            const float *src = b + kk * n + j0;
            int64_t j = 0;
            for (; j < w; j++) dst[kk * PANEL + j] = src[j];
            for (; j < PANEL; j++) dst[kk * PANEL + j] = 0.0f;
        }
    }
}

void cnx_gemm_f32_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *packed_b, const float *bias, int act, const float *residual,
                      int64_t ldr, float *c, int64_t ldc) {
    act = cnx_act_normalise(act);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            const float *bp = packed_b + (j / PANEL) * PANEL * k + j % PANEL;
            float s = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) s += a[i * lda + kk] * bp[kk * PANEL];
            if (bias) s += bias[j];
            s = cnx_act_scalar(act, s);
            if (residual) s += residual[i * ldr + j];
            c[i * ldc + j] = s;
        }
    }
}

#if CNX_X86

#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

// Blocking. K is split into equal blocks of at most KC; a row block's A (MC x KC) and C stay in
// L2. A panel's K block is KC x 32 floats (64 KB at KC = 512): more than a 48 KB L1, but it
// streams from L2 in order while the tile's accumulators stay in registers, and fewer K blocks
// mean fewer passes storing and reloading C's partial sums. Every K of ConvNeXt's first
// pointwise layers up to 512 channels is then one block. On an Intel Xeon (family 6 model 207)
// KC = 512 against 256: +1.5-3% on 58 x 512 x 2048 with GELU and on K = 384 shapes, level at
// K = 2048; the whole model (2 threads, alternating binaries) 0.96 (ConvNeXt-B 384) and 0.98
// (ConvNeXt-T) of the time. Earlier, on Zen 5, KC 192..320 and MC 56..252 were within 2-3 %.
// The blocking does not change the arithmetic: C's partial sums are exact float32 values, so
// every output is the same bits at any KC.
#ifndef GEMM_KC
#define GEMM_KC 512
#endif
#ifndef GEMM_MC
#define GEMM_MC 112
#endif
// Prefetch distance in K steps of B inside a tile. With the next panel into L2 instead of L1
// and the hidden activation's rows spread over L1's sets (FastExecutor), one thread, best of 51:
// 58 x 512 x 2048 159.8 -> 162-164 GFLOP/s, 144 x 1024 x 4096 156 -> 159, 64 x 384 x 1536 with
// GELU 154-159 -> 159-161; the other ConvNeXt shapes level.
#ifndef GEMM_PFD
#define GEMM_PFD 8
#endif
#define MR512 14   // AVX-512 tile: 14 rows x 32 columns = 28 zmm accumulators
#define MR256 6    // AVX2 tile:     6 rows x 16 columns = 12 ymm accumulators

INLINE T256 __m256i mask256(int64_t valid) {
    // Lanes [0, valid) set, valid clamped to [0, 8].
    if (valid < 0) valid = 0;
    if (valid > 8) valid = 8;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// MARK: - Blocking shared by the SIMD paths

typedef cnx_tile_ep tile_ep;

// The residual can be folded into the initial accumulators (read at the first K block) unless
// an activation sits between; then it must survive in memory until the last K block, which it does not
// if it is C itself and C holds partial sums. That case runs K in one block.
static int64_t k_block(int64_t m, int64_t n, int64_t k, int act, const float *residual,
                       int64_t ldr, const float *c, int64_t ldc) {
    if (k <= GEMM_KC) return k;
    if (residual && act) {
        const float *r_end = residual + (m - 1) * ldr + n, *c_end = c + (m - 1) * ldc + n;
        if (residual < c_end && c < r_end) return k;
    }
    int64_t blocks = (k + GEMM_KC - 1) / GEMM_KC;
    return (k + blocks - 1) / blocks;
}

// MARK: - AVX-512 GEMM: 14 x 32 tiles

// The tile's two ends (bias, residual, activation) are in gemm_tile512.h.
INLINE T512 void tile512(const int MR, int64_t kc, const float *a, int64_t lda, const float *bp,
                         float *c, int64_t ldc, const tile_ep *e) {
    __m512 acc0[MR512], acc1[MR512];
    CNX_TILE512_MASKS(e->valid_n, m0, m1);
    cnx_tile512_start(MR, acc0, acc1, c, ldc, e, m0, m1);
    const float *pf = e->prefetch;
    for (int64_t kk = 0; kk < kc; kk++) {
        // This panel's B, GEMM_PFD steps ahead, into L1 (the K block, 64 KB at KC = 512, streams
        // from L2); the next panel's K block, on the first tile of a panel, into L2 only (into L1
        // it evicted this one's lines and A's).
        _mm_prefetch((const char *)(bp + (kk + GEMM_PFD) * PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(bp + (kk + GEMM_PFD) * PANEL + 16), _MM_HINT_T0);
        if (pf) {
            _mm_prefetch((const char *)(pf + kk * PANEL), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + kk * PANEL + 16), _MM_HINT_T1);
        }
        const __m512 b0 = _mm512_loadu_ps(bp + kk * PANEL), b1 = _mm512_loadu_ps(bp + kk * PANEL + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    cnx_tile512_finish(MR, acc0, acc1, c, ldc, e, m0, m1);
}

typedef void (*tile_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                        int64_t ldc, const tile_ep *e);

#define DEF_TILE512(R)                                                                          \
    static T512 void tile512_##R(int64_t kc, const float *a, int64_t lda, const float *bp,     \
                                 float *c, int64_t ldc, const tile_ep *e) {                      \
        tile512(R, kc, a, lda, bp, c, ldc, e);                                                   \
    }
DEF_TILE512(1) DEF_TILE512(2) DEF_TILE512(3) DEF_TILE512(4) DEF_TILE512(5) DEF_TILE512(6)
DEF_TILE512(7) DEF_TILE512(8) DEF_TILE512(9) DEF_TILE512(10) DEF_TILE512(11) DEF_TILE512(12)
DEF_TILE512(13) DEF_TILE512(14)

static const tile_fn TILES512[MR512 + 1] = {
    0, tile512_1, tile512_2, tile512_3, tile512_4, tile512_5, tile512_6, tile512_7,
    tile512_8, tile512_9, tile512_10, tile512_11, tile512_12, tile512_13, tile512_14,
};

// MARK: - AVX2 GEMM: 6 x 16 tiles (each 32-column panel in two halves)

// The epilogue of a finished tile with an activation (as tile_act512_rows): rows of two vectors.
INLINE T256 void tile_act256_rows(const int ACT, int mr, __m256 (*tile)[2], float *c, int64_t ldc,
                                  const tile_ep *e, int full, __m256i m0, __m256i m1) {
    const float *res = e->residual;
    for (int r = 0; r < mr; r++) {
        __m256 v[2] = {tile[r][0], tile[r][1]};
        cnx_act256_n(ACT, 2, v);
        float *cr = c + r * ldc;
        if (full) {
            if (res) {
                v[0] = _mm256_add_ps(v[0], _mm256_loadu_ps(res + r * e->ldr));
                v[1] = _mm256_add_ps(v[1], _mm256_loadu_ps(res + r * e->ldr + 8));
            }
            _mm256_storeu_ps(cr, v[0]);
            _mm256_storeu_ps(cr + 8, v[1]);
        } else {
            if (res) {
                v[0] = _mm256_add_ps(v[0], _mm256_maskload_ps(res + r * e->ldr, m0));
                v[1] = _mm256_add_ps(v[1], _mm256_maskload_ps(res + r * e->ldr + 8, m1));
            }
            _mm256_maskstore_ps(cr, m0, v[0]);
            _mm256_maskstore_ps(cr + 8, m1, v[1]);
        }
    }
}

static T256 __attribute__((noinline)) void tile_act256(int act, int mr, __m256 (*tile)[2], float *c,
                                                       int64_t ldc, const tile_ep *e, int full,
                                                       __m256i m0, __m256i m1) {
#define BODY(ACT) tile_act256_rows(ACT, mr, tile, c, ldc, e, full, m0, m1)
    CNX_ACT_DISPATCH(act, BODY);
#undef BODY
}

INLINE T256 void tile256(const int MR, int64_t kc, const float *a, int64_t lda, const float *bp,
                         float *c, int64_t ldc, const tile_ep *e) {
    __m256 acc0[MR256], acc1[MR256];
    const int64_t vn = e->valid_n;
    const int full = vn >= 16;
    const __m256i m0 = mask256(vn), m1 = mask256(vn - 8);
#define LOAD0(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), m0))
#define LOAD1(p) (full ? _mm256_loadu_ps((p) + 8) : _mm256_maskload_ps((p) + 8, m1))
    if (e->first) {
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (e->bias) {
            b0 = LOAD0(e->bias);
            b1 = LOAD1(e->bias);
        }
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = b0;
            acc1[r] = b1;
            if (e->residual && !e->act) {
                acc0[r] = _mm256_add_ps(acc0[r], LOAD0(e->residual + r * e->ldr));
                acc1[r] = _mm256_add_ps(acc1[r], LOAD1(e->residual + r * e->ldr));
            }
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            acc0[r] = LOAD0(c + r * ldc);
            acc1[r] = LOAD1(c + r * ldc);
        }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_loadu_ps(bp + kk * PANEL), b1 = _mm256_loadu_ps(bp + kk * PANEL + 8);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * lda + kk);
            acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
        }
    }
    if (e->last && e->act) {
        __m256 tile[MR256][2];
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            tile[r][0] = acc0[r];
            tile[r][1] = acc1[r];
        }
        tile_act256(e->act, MR, tile, c, ldc, e, full, m0, m1);
        return;
    }
    if (full) {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_ps(c + r * ldc, acc0[r]);
            _mm256_storeu_ps(c + r * ldc + 8, acc1[r]);
        }
    } else {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            _mm256_maskstore_ps(c + r * ldc, m0, acc0[r]);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, acc1[r]);
        }
    }
#undef LOAD0
#undef LOAD1
}

#define DEF_TILE256(R)                                                                          \
    static T256 void tile256_##R(int64_t kc, const float *a, int64_t lda, const float *bp,     \
                                 float *c, int64_t ldc, const tile_ep *e) {                      \
        tile256(R, kc, a, lda, bp, c, ldc, e);                                                   \
    }
DEF_TILE256(1) DEF_TILE256(2) DEF_TILE256(3) DEF_TILE256(4) DEF_TILE256(5) DEF_TILE256(6)

static const tile_fn TILES256[MR256 + 1] = {
    0, tile256_1, tile256_2, tile256_3, tile256_4, tile256_5, tile256_6,
};

// MARK: - Driver

// A's rows a multiple of 2 KB apart (lda 512, 1024, 1536, 2048 ... floats: the first pointwise
// layer of ConvNeXt's 512- and 1024-channel stages, a downsample's 2 x 2 x 512 patches) fall in
// one or two of L1's 64 sets (32 KB 8-way, 48 KB 12-way), so a tile's 14 rows evict each other
// on every K step. Such a row block's K block is first copied with its rows an odd number of
// lines apart (every set). On an AMD EPYC (Zen 4), one thread, best of 31: 144 x 1024 x 4096
// 88 -> 110 GFLOP/s, 144 x 1024 x 2048 91 -> 114, 58 x 2048 x 512 106 -> 115, 49 x 3072 x 768
// 98 -> 115 (the kernel benchmark's --lda-pad 16 against 0). The copy is made once per row block
// and K block and read by every panel. The arithmetic is unchanged.
static int64_t a_copy_stride(int64_t lda, int64_t kc) {
    if (lda < 512 || lda % 512 != 0 || kc > GEMM_KC) return 0;
    const int64_t lines = (kc + 15) / 16;
    return (lines | 1) * 16;
}

// Runs the loop nest with tiles `mr_max` rows by `tile_n` columns (32 for AVX-512: a whole
// panel; 16 for AVX2: half a panel).
static void gemm_blocked(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const float *packed_b, const float *bias, int act,
                         const float *residual, int64_t ldr, float *c, int64_t ldc,
                         const tile_fn *tiles, int mr_max, int tile_n) {
    if (m <= 0 || n <= 0) return;
    const int64_t kcb = k_block(m, n, k, act, residual, ldr, c, ldc);
    const int64_t panels = (n + PANEL - 1) / PANEL;
    // Row blocks of at most MC rows, as equal as whole tiles allow; inside a block, tiles of
    // nearly equal height (64 rows: 13 13 13 13 12, not 14 14 14 14 8), since a short tile has
    // too few accumulators to cover the FMA latency.
    const int64_t max_tiles = GEMM_MC / mr_max;
    const int64_t tiles_total = (m + mr_max - 1) / mr_max;
    const int64_t blocks = (tiles_total + max_tiles - 1) / max_tiles;
    const int64_t block_tiles = (tiles_total + blocks - 1) / blocks;
    for (int64_t m0 = 0; m0 < m;) {
        const int64_t m1 = m0 + block_tiles * mr_max < m ? m0 + block_tiles * mr_max : m;
        const int64_t rows = m1 - m0, ntiles = (rows + mr_max - 1) / mr_max;
        const int64_t tile_rows = rows / ntiles, taller = rows % ntiles;  // first `taller` get +1
        int64_t k0 = 0;
        do {
            const int64_t kc = k - k0 < kcb ? k - k0 : kcb;
            const float *ab = a + m0 * lda + k0;
            int64_t ldab = lda;
            const int64_t ldp = a_copy_stride(lda, kc);
            float *copy = ldp ? cnx_thread_scratch(CNX_SCRATCH_GEMM_A, (size_t)(rows * ldp)) : NULL;
            if (copy) {
                for (int64_t r = 0; r < rows; r++) memcpy(copy + r * ldp, ab + r * lda, (size_t)kc * sizeof(float));
                ab = copy;
                ldab = ldp;
            }
            tile_ep e;
            e.ldr = ldr;
            e.act = act;
            e.first = k0 == 0;
            e.last = k0 + kc >= k;
            for (int64_t p = 0; p < panels; p++) {
                for (int64_t j0 = p * PANEL; j0 < (p + 1) * PANEL && j0 < n; j0 += tile_n) {
                    const float *bp = packed_b + p * PANEL * k + k0 * PANEL + (j0 - p * PANEL);
                    e.bias = bias ? bias + j0 : NULL;
                    e.valid_n = n - j0;
                    for (int64_t t = 0, i = m0; t < ntiles; t++) {
                        const int64_t mr = tile_rows + (t < taller);
                        e.prefetch = (i == m0 && p + 1 < panels && tile_n == PANEL) ? bp + PANEL * k : NULL;
                        e.residual = residual ? residual + i * ldr + j0 : NULL;
                        tiles[mr](kc, ab + (i - m0) * ldab, ldab, bp, c + i * ldc + j0, ldc, &e);
                        i += mr;
                    }
                }
            }
            k0 += kc;
        } while (k0 < k);
        m0 = m1;
    }
}

#endif  // CNX_X86

// MARK: - Dispatch

void cnx_gemm_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *packed_b, const float *bias, int act, const float *residual,
                  int64_t ldr, float *c, int64_t ldc) {
    act = cnx_act_normalise(act);
    switch (cnx_isa_current()) {
#if CNX_X86
    case CNX_ISA_AVX512:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES512, MR512, 32);
        return;
    case CNX_ISA_AVX2:
        gemm_blocked(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc, TILES256, MR256, 16);
        return;
#endif
#if CNX_ARM64
    case CNX_ISA_NEON: cnx_gemm_f32_neon(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc); return;
#endif
    default:
        cnx_gemm_f32_ref(m, n, k, a, lda, packed_b, bias, act, residual, ldr, c, ldc);
        return;
    }
}
