// Int8 kernels of the quantized pointwise layers: a u8 x s8 -> s32 GEMM over weights packed once
// at load time, its dequantizing epilogues (float out, or requantized u8 out), the two fused into
// one call, and the float -> u8 quantizer that follows LayerNorm.
//
// The scheme (ONNX QLinear / QDQ, per-channel weights): a real activation is a_scale (q - a_zero)
// with q in [0, 255]; a real weight is w_scale[j] w with w in [-128, 127], symmetric. So
//     sum_k A[i][k] W[k][j] = a_scale w_scale[j] (sum_k q[i][k] w[k][j] - a_zero colsum[j])
// with colsum[j] = sum_k w[k][j]: the GEMM runs on the raw bytes and the zero point becomes one
// integer per column, subtracted in the epilogue.
//
// Paths, chosen at run time (cnx_qisa_current), each beside the scalar `_ref` twin it is tested
// against: AVX-512 VNNI (vpdpbusd on zmm), AVX-VNNI (vpdpbusd on ymm, VEX), AVX2 without VNNI
// (bytes widened to 16 bits, vpmaddwd) and portable C (the reference arithmetic in packed order;
// the epilogues and the quantizer are the `_ref` functions themselves).
// Exactness:
//   - the s32 GEMM is bit-identical on every path (integer arithmetic, wrapping mod 2^32 like
//     vpdpbusd; no overflow is possible for k <= 65793 since |a w| <= 255 * 128);
//   - the epilogues and the quantizer perform the same float operations in the same order on
//     every path (no FMA contraction), so without an activation they are bit-identical too; with
//     one (act = CNX_ACT_GELU, CNX_ACT_GELU_TANH or CNX_ACT_SILU, cnx_fast.h) the SIMD paths apply
//     exactly what cnx_activation_inplace_f32 computes on the matching float path (AVX-512 VNNI:
//     the AVX-512 one; AVX-VNNI and AVX2: the AVX2 one; bit for bit) and the reference applies
//     the libm-based cnx_activation_inplace_f32_ref, so float outputs differ by a few ulp (GELU:
//     within 4e-8 absolute beyond the rounding; tanh GELU and SiLU: within 4 ulp) and u8 outputs
//     by at most 1 where the value sits on a rounding boundary. The quadratic GELU
//     (CNX_ACT_GELU_QUADRATIC) is one specification evaluated in one order on every path,
//     reference included, so with it the epilogues are bit-identical too.
// All functions are single-threaded and allocate nothing: callers thread over row tiles.
#ifndef CNX_QGEMM_H
#define CNX_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "cnx_fast.h"  // CNX_ACT_*

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Instruction-set dispatch

/// The int8 kernel paths. The numbers are stable; a larger number is not always a superset
/// (a CPU can have AVX-512 VNNI without AVX-VNNI), see cnx_qisa_supported.
typedef enum {
    CNX_QISA_SCALAR = 0,        // portable C
    CNX_QISA_AVX2 = 1,          // AVX2 + FMA, no VNNI
    CNX_QISA_AVX_VNNI = 2,      // AVX2 + FMA + AVX-VNNI (ymm)
    CNX_QISA_AVX512_VNNI = 3,   // AVX-512 F/BW/DQ/VL + AVX512-VNNI (zmm), OS-enabled zmm state
    CNX_QISA_NEON = 4,          // arm64 without dot product: widening SMLAL (Cortex-A53/A72)
    CNX_QISA_DOTPROD = 5,       // arm64 FEAT_DotProd: SDOT on activations offset to s8
    CNX_QISA_I8MM = 6,          // arm64 FEAT_I8MM: SUDOT (u8 x s8 directly)
} cnx_qisa;
#define CNX_QISA_LAST CNX_QISA_I8MM

/// 1 if this CPU and OS can run the path (cnx_cpu_hardware), else 0.
int cnx_qisa_supported(cnx_qisa isa);

/// The best path the CPU's features allow (cnx_cpu_features: lowered by the environment variable
/// CNX_ISA, which names a level of cnx_cpu.h: `scalar`, `avx2` (no VNNI), `avxvnni`, `avx512`
/// or `avx512vnni`, `neon`, `dotprod`, `i8mm`). Never a path the CPU lacks.
cnx_qisa cnx_qisa_detect(void);

/// The path the int8 kernels use now: cnx_qisa_detect() on first use, unless forced. Thread-safe.
cnx_qisa cnx_qisa_current(void);

/// Forces a path (tests, benchmarks): the best supported path at or below `isa`; -1 returns to
/// automatic detection. Not meant to race with running kernels.
void cnx_qisa_force(int isa);

/// "scalar", "avx2", "avxvnni", "avx512vnni", "neon", "dotprod", "i8mm" (or "unknown").
const char *cnx_qisa_name(cnx_qisa isa);

/// Rows of the current path's tallest GEMM tile (14 on AVX-512 VNNI, 6 on AVX-VNNI, 2 on AVX2, 5
/// or 4 on arm64, 1 portable): a row count that is a multiple of it runs on full tiles only, the
/// rest on shorter, slower ones. Callers that split a map into row tiles round to it.
int64_t cnx_qgemm_row_tile(void);

// MARK: - Packed weights

/// Columns per packed panel.
#define CNX_QGEMM_PANEL 16

/// Bytes the packed form of a (k x n) int8 B needs: ceil(n / 16) panels of ceil(k / 4) groups of
/// 64 bytes, then ceil(n / 16) * 16 int32 column sums. A multiple of 64; 0 when n <= 0.
size_t cnx_qgemm_packed_b_bytes(int64_t k, int64_t n);

/// Packs B (k x n int8, row-major, leading dimension n) once at load time. Panel p (columns
/// 16p..16p+15) is ceil(k / 4) groups of 64 bytes, K-major; group g holds, for each of the 16
/// columns jj in order, the 4 bytes B[4g..4g+3][16p + jj] (k and n zero-padded): one zmm load is
/// 16 columns x 4 k, the operand layout of vpdpbusd. The column sums of B follow the panels
/// (see cnx_qgemm_packed_col_sums). Best 64-byte aligned (not required).
void cnx_qgemm_pack_b(const int8_t *b, int64_t k, int64_t n, void *packed);

/// The column sums stored in a packed B: n int32 values, colsum[j] = sum_k B[k][j].
const int32_t *cnx_qgemm_packed_col_sums(const void *packed, int64_t k, int64_t n);

/// colsum[j] = sum_k B[k][j] from the unpacked B (k x n), into out[n].
void cnx_qgemm_col_sums(const int8_t *b, int64_t k, int64_t n, int32_t *out);

// MARK: - GEMM

/// C[i][j] = sum_k A[i][k] B[k][j] in int32, 0 <= i < m, 0 <= j < n.
///   a: uint8 m x k, leading dimension lda bytes (never read past a row's k bytes).
///   packed_b: from cnx_qgemm_pack_b(b, k, n). c: int32, leading dimension ldc (elements).
/// k == 0 gives zeros. Bit-identical on every path.
void cnx_qgemm_u8s8_s32(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, int32_t *c, int64_t ldc);
void cnx_qgemm_u8s8_s32_ref(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                            const void *packed_b, int32_t *c, int64_t ldc);

// MARK: - Epilogues (from an int32 accumulator buffer)

/// The dequantized value of one output, in this order, in float, without FMA contraction:
///   y = (float)(acc[i][j] - a_zero * colsum[j]) * (a_scale * w_scale[j]);  y = y + bias[j];
///   then act, a CNX_ACT_* code (cnx_fast.h: 0 none, 1 exact GELU, 2 tanh GELU, 3 SiLU; other
///   values none), computed as cnx_activation_inplace_f32 (see the exactness notes above).
/// colsum NULL means zeros, w_scale NULL means ones, bias NULL means zeros.
/// Float output: out[i][j] = residual[i][j] + y (no add when residual is NULL); residual may be
/// `out` itself (then ldr == ldo) but must not overlap it otherwise.
void cnx_qgemm_epilogue_f32(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                            const int32_t *colsum, int32_t a_zero, float a_scale,
                            const float *w_scale, const float *bias, int act,
                            const float *residual, int64_t ldr, float *out, int64_t ldo);
void cnx_qgemm_epilogue_f32_ref(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                                const int32_t *colsum, int32_t a_zero, float a_scale,
                                const float *w_scale, const float *bias, int act,
                                const float *residual, int64_t ldr, float *out, int64_t ldo);

/// Requantized output: out[i][j] = clamp(round_half_even(y * (1 / o_scale)) + o_zero, 0, 255),
/// exactly as cnx_quantize_u8 (NaN gives 0; o_zero is clamped to [0, 255]).
void cnx_qgemm_epilogue_u8(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                           const int32_t *colsum, int32_t a_zero, float a_scale,
                           const float *w_scale, const float *bias, int act, float o_scale,
                           int32_t o_zero, uint8_t *out, int64_t ldo);
void cnx_qgemm_epilogue_u8_ref(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                               const int32_t *colsum, int32_t a_zero, float a_scale,
                               const float *w_scale, const float *bias, int act, float o_scale,
                               int32_t o_zero, uint8_t *out, int64_t ldo);

// MARK: - Fused GEMM + epilogue (the fast path)

/// cnx_qgemm_u8s8_s32 followed by cnx_qgemm_epilogue_f32, with the int32 tile kept in registers:
/// same arguments as the two, without the accumulator buffer. out must not overlap a.
void cnx_qgemm_fused_f32(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                         const void *packed_b, const int32_t *colsum, int32_t a_zero,
                         float a_scale, const float *w_scale, const float *bias, int act,
                         const float *residual, int64_t ldr, float *out, int64_t ldo);
void cnx_qgemm_fused_f32_ref(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                             const void *packed_b, const int32_t *colsum, int32_t a_zero,
                             float a_scale, const float *w_scale, const float *bias, int act,
                             const float *residual, int64_t ldr, float *out, int64_t ldo);

/// cnx_qgemm_u8s8_s32 followed by cnx_qgemm_epilogue_u8, fused. out must not overlap a.
void cnx_qgemm_fused_u8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, const int32_t *colsum, int32_t a_zero,
                        float a_scale, const float *w_scale, const float *bias, int act,
                        float o_scale, int32_t o_zero, uint8_t *out, int64_t ldo);
void cnx_qgemm_fused_u8_ref(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                            const void *packed_b, const int32_t *colsum, int32_t a_zero,
                            float a_scale, const float *w_scale, const float *bias, int act,
                            float o_scale, int32_t o_zero, uint8_t *out, int64_t ldo);

// MARK: - Quantization

/// q[i] = clamp(round_half_even(x[i] * (1 / scale)) + zero, 0, 255), NaN -> 0, zero clamped to
/// [0, 255] (a u8 zero point), where 1 / scale is
/// rounded to float once (as cnx_quantize_u8_reference in cnx_qref.h: a multiply, not a divide,
/// so it can differ from x / scale by one step when x / scale is within an ulp of a .5 boundary).
/// Bit-identical on every path.
void cnx_quantize_u8(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q);
void cnx_quantize_u8_ref(const float *x, int64_t count, float scale, int32_t zero, uint8_t *q);

// MARK: - Internal: shared by Sources/CKernels/fast_qgemm*.c, not API

#ifdef CNX_QGEMM_INTERNAL
enum { CNX_QOUT_S32 = 0, CNX_QOUT_F32 = 1, CNX_QOUT_U8 = 2 };

// Rows of each path's tallest micro-tile; cnx_qgemm_row_tile() reports the running path's.
#ifndef QGEMM_MR
#define QGEMM_MR 14  // AVX-512 VNNI (overridable for tile-height experiments)
#endif
#define CNX_QMR_AVX_VNNI 6
#define CNX_QMR_AVX2 2
#define CNX_QMR_NEON 4
#define CNX_QMR_DOT 5  // dot product and i8mm

/// What to do with the int32 tile: one of the three outputs, with the epilogue's parameters.
typedef struct {
    int mode;                         // CNX_QOUT_*
    const int32_t *colsum;            // may be NULL
    int32_t a_zero;
    float a_scale;
    const float *w_scale, *bias;      // may be NULL
    int act;
    const float *residual;            // F32 only, may be NULL
    int64_t ldr;
    float o_inv;                      // U8 only: 1 / o_scale
    int32_t o_zero;                   // U8 only, clamped to [0, 255]
    void *out;                        // int32_t*, float* or uint8_t* by mode
    int64_t ldo;
} cnx_qjob;

void cnx_qgemm_run_avx512vnni(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                              const void *packed_b, const cnx_qjob *job);
void cnx_qgemm_run_avxvnni(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                           const void *packed_b, const cnx_qjob *job);
void cnx_qgemm_run_avx2(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed_b, const cnx_qjob *job);
void cnx_qepilogue_avx512(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                          const cnx_qjob *job);
void cnx_qepilogue_avx2(int64_t m, int64_t n, const int32_t *acc, int64_t ldacc,
                        const cnx_qjob *job);
void cnx_quantize_u8_avx512(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q);
void cnx_quantize_u8_avx2(const float *x, int64_t count, float inv, int32_t zero, uint8_t *q);
#endif

#ifdef __cplusplus
}
#endif

#endif
