// The CPU features every kernel family dispatches on, detected in one place (cpu_features.c),
// and the one environment variable that lowers them: CNX_ISA. The float kernels (cnx_isa,
// cnx_fast.h) and the int8 kernels (cnx_qisa, cnx_qgemm.h) each map the allowed features to their
// best path; a new kernel family (bf16, ...) does the same with its own bits from this table.
#ifndef CNX_CPU_H
#define CNX_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

/// One bit per feature. x86 bits imply the OS saves the registers they use (XCR0).
typedef enum {
    CNX_CPU_AVX2 = 1u << 0,         // AVX2 + FMA, OS-enabled ymm state
    CNX_CPU_AVX_VNNI = 1u << 1,     // AVX-VNNI (VEX-encoded VPDPBUSD on ymm); implies AVX2
    CNX_CPU_AVX512 = 1u << 2,       // AVX-512 F/BW/DQ/VL, OS-enabled zmm and mask state; implies AVX2
    CNX_CPU_AVX512_VNNI = 1u << 3,  // AVX512-VNNI; implies AVX512
    CNX_CPU_AVX512_BF16 = 1u << 4,  // AVX512-BF16 (VDPBF16PS); implies AVX512
    CNX_CPU_NEON = 1u << 8,         // AArch64 Advanced SIMD with FMA (every arm64 CPU)
    CNX_CPU_DOTPROD = 1u << 9,      // FEAT_DotProd: SDOT / UDOT
    CNX_CPU_I8MM = 1u << 10,        // FEAT_I8MM: USDOT / SUDOT / SMMLA
    CNX_CPU_BF16 = 1u << 11,        // FEAT_BF16: BFDOT / BFMMLA
} cnx_cpu_feature;

/// What this CPU and OS offer (cpuid + xgetbv on x86; getauxval or sysctl on arm64), detected
/// once. Built with -DCNX_NO_SIMD, or on another architecture: 0.
unsigned cnx_cpu_hardware(void);

/// cnx_cpu_hardware() lowered by the environment variable CNX_ISA when it names a level (see
/// cnx_cpu_level); read at each call. An unknown name lowers nothing (the CLI refuses it).
unsigned cnx_cpu_features(void);

/// The features level `name` allows, into *features (may be NULL); returns 0 when `name` is not
/// a level. Levels: scalar (none), avx2, avxvnni (+ AVX-VNNI), avx512 and its alias avx512vnni
/// (every x86 feature), neon, dotprod (+ dot product), i8mm (every arm64 feature).
int cnx_cpu_level(const char *name, unsigned *features);

/// The level names, comma-separated, for messages: "scalar, avx2, ...".
const char *cnx_cpu_level_names(void);

/// A feature's name ("avx2", "avx512vnni", "dotprod", ...), or "unknown" for anything but one bit.
const char *cnx_cpu_feature_name(unsigned feature);

#ifdef __cplusplus
}
#endif
#endif
