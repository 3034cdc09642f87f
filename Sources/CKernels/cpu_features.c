// CPU-feature detection for every kernel family, and the CNX_ISA levels that lower it: one
// table of features, one of levels, one environment variable. The arm64 OS queries are in
// neon_detect.c (cnx_arm64_features).
#include "cnx_cpu.h"
#include "neon_internal.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <cpuid.h>

// XCR0 bits the OS must enable before ymm / zmm registers can be used.
#define XCR0_YMM 0x06u  // SSE and AVX state
#define XCR0_ZMM 0xE6u  // plus opmask, ZMM_Hi256, Hi16_ZMM state

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static unsigned detect(void) {
    unsigned eax, ebx, ecx, edx, f = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, fma = (ecx >> 12) & 1;
    if (!osxsave || !avx || !fma) return 0;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_YMM) != XCR0_YMM || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    if (!((ebx >> 5) & 1)) return 0;  // AVX2
    f |= CNX_CPU_AVX2;
    const int avx512f = (ebx >> 16) & 1, dq = (ebx >> 17) & 1, bw = (ebx >> 30) & 1, vl = (ebx >> 31) & 1;
    const int vnni512 = (ecx >> 11) & 1;
    unsigned eax1, ebx1, ecx1, edx1;
    __cpuid_count(7, 1, eax1, ebx1, ecx1, edx1);
    if ((eax1 >> 4) & 1) f |= CNX_CPU_AVX_VNNI;
    if (avx512f && dq && bw && vl && (xcr0 & XCR0_ZMM) == XCR0_ZMM) {
        f |= CNX_CPU_AVX512;
        if (vnni512) f |= CNX_CPU_AVX512_VNNI;
        if ((eax1 >> 5) & 1) f |= CNX_CPU_AVX512_BF16;
    }
    return f;
}
#elif defined(__aarch64__) && !defined(CNX_NO_SIMD)
static unsigned detect(void) {
    const unsigned a = cnx_arm64_features();
    unsigned f = CNX_CPU_NEON;
    if (a & CNX_ARM64_DOTPROD) f |= CNX_CPU_DOTPROD;
    if (a & CNX_ARM64_I8MM) f |= CNX_CPU_I8MM;
    if (a & CNX_ARM64_BF16) f |= CNX_CPU_BF16;
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

// Detected once: bit 31 marks the value as known. Racing first calls store the same value.
#define KNOWN (1u << 31)

unsigned cnx_cpu_hardware(void) {
    static _Atomic unsigned cached = 0;
    unsigned v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!(v & KNOWN)) atomic_store_explicit(&cached, v = detect() | KNOWN, memory_order_relaxed);
    return v & ~KNOWN;
}

#define X86_ALL (CNX_CPU_AVX2 | CNX_CPU_AVX_VNNI | CNX_CPU_AVX512 | CNX_CPU_AVX512_VNNI | CNX_CPU_AVX512_BF16)
#define ARM64_ALL (CNX_CPU_NEON | CNX_CPU_DOTPROD | CNX_CPU_I8MM | CNX_CPU_BF16)

// The CNX_ISA levels: the features each allows (a level of the other architecture allows none
// of this CPU's, so it gives the scalar paths).
static const struct {
    const char *name;
    unsigned features;
} levels[] = {
    {"scalar", 0},
    {"avx2", CNX_CPU_AVX2},
    {"avxvnni", CNX_CPU_AVX2 | CNX_CPU_AVX_VNNI},
    {"avx512", X86_ALL},
    {"avx512vnni", X86_ALL},
    {"neon", CNX_CPU_NEON},
    {"dotprod", CNX_CPU_NEON | CNX_CPU_DOTPROD},
    {"i8mm", ARM64_ALL},
};

static const struct {
    unsigned bit;
    const char *name;
} features[] = {
    {CNX_CPU_AVX2, "avx2"},       {CNX_CPU_AVX_VNNI, "avxvnni"}, {CNX_CPU_AVX512, "avx512"},
    {CNX_CPU_AVX512_VNNI, "avx512vnni"}, {CNX_CPU_AVX512_BF16, "avx512bf16"}, {CNX_CPU_NEON, "neon"},
    {CNX_CPU_DOTPROD, "dotprod"}, {CNX_CPU_I8MM, "i8mm"},        {CNX_CPU_BF16, "bf16"},
};

int cnx_cpu_level(const char *name, unsigned *allowed) {
    if (name == NULL) return 0;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(name, levels[i].name) == 0) {
            if (allowed) *allowed = levels[i].features;
            return 1;
        }
    }
    return 0;
}

const char *cnx_cpu_level_names(void) {
    return "scalar, avx2, avxvnni, avx512, avx512vnni, neon, dotprod, i8mm";
}

unsigned cnx_cpu_features(void) {
    const unsigned hw = cnx_cpu_hardware();
    unsigned allowed;
    const char *env = getenv("CNX_ISA");
    if (env == NULL || env[0] == 0 || !cnx_cpu_level(env, &allowed)) return hw;
    return hw & allowed;
}

const char *cnx_cpu_feature_name(unsigned feature) {
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (features[i].bit == feature) return features[i].name;
    return "unknown";
}
