// Run-time choice of the kernel path: what the CPU and OS support, lowered by CNX_ISA or by
// cnx_isa_force. The choice is cached in one atomic int that every fast_* entry point reads.
#include "cnx_fast.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(CNX_NO_SIMD)
#include <cpuid.h>

// XCR0 bits the OS must enable before ymm / zmm registers can be used.
#define XCR0_YMM 0x06u   // SSE and AVX state
#define XCR0_ZMM 0xE6u   // plus opmask, ZMM_Hi256, Hi16_ZMM state

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static cnx_isa hardware_isa(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return CNX_ISA_SCALAR;
    int osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, fma = (ecx >> 12) & 1;
    if (!osxsave || !avx || !fma) return CNX_ISA_SCALAR;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_YMM) != XCR0_YMM) return CNX_ISA_SCALAR;
    if (__get_cpuid_max(0, NULL) < 7) return CNX_ISA_SCALAR;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    int avx2 = (ebx >> 5) & 1;
    if (!avx2) return CNX_ISA_SCALAR;
    int f = (ebx >> 16) & 1, dq = (ebx >> 17) & 1, bw = (ebx >> 30) & 1, vl = (ebx >> 31) & 1;
    if (f && dq && bw && vl && (xcr0 & XCR0_ZMM) == XCR0_ZMM) return CNX_ISA_AVX512;
    return CNX_ISA_AVX2;
}
#elif defined(__aarch64__) && !defined(CNX_NO_SIMD)
static cnx_isa hardware_isa(void) { return CNX_ISA_NEON; }
#else
static cnx_isa hardware_isa(void) { return CNX_ISA_SCALAR; }
#endif

// x86 levels nest (scalar < avx2 < avx512); on arm64 only scalar and neon exist.
static int isa_supported(int isa, cnx_isa hw) {
    if (hw == CNX_ISA_NEON) return isa == CNX_ISA_SCALAR || isa == CNX_ISA_NEON;
    return isa >= 0 && isa <= (int)hw;
}

static _Atomic int g_hardware = -1;  // hardware_isa(), once known
static _Atomic int g_active = -1;    // the path in use; -1 = not chosen yet

static cnx_isa hardware_cached(void) {
    int v = atomic_load_explicit(&g_hardware, memory_order_relaxed);
    if (v < 0) {
        v = (int)hardware_isa();
        atomic_store_explicit(&g_hardware, v, memory_order_relaxed);
    }
    return (cnx_isa)v;
}

cnx_isa cnx_isa_detect(void) {
    cnx_isa hw = hardware_cached();
    const char *env = getenv("CNX_ISA");
    if (env == NULL || env[0] == 0) return hw;
    cnx_isa want = hw;
    if (strcmp(env, "scalar") == 0) want = CNX_ISA_SCALAR;
    else if (strcmp(env, "avx2") == 0) want = CNX_ISA_AVX2;
    else if (strcmp(env, "avx512") == 0) want = CNX_ISA_AVX512;
    else if (strcmp(env, "neon") == 0) want = CNX_ISA_NEON;
    if (want > hw) want = hw;
    return isa_supported(want, hw) ? want : CNX_ISA_SCALAR;
}

cnx_isa cnx_isa_current(void) {
    int v = atomic_load_explicit(&g_active, memory_order_relaxed);
    if (v < 0) {
        // Racing first calls compute the same value, so a plain store is enough.
        v = (int)cnx_isa_detect();
        atomic_store_explicit(&g_active, v, memory_order_relaxed);
    }
    return (cnx_isa)v;
}

void cnx_isa_force(int isa) {
    if (isa < 0) {
        atomic_store_explicit(&g_active, (int)cnx_isa_detect(), memory_order_relaxed);
        return;
    }
    const cnx_isa hw = hardware_cached();
    int v = isa < (int)hw ? isa : (int)hw;
    if (!isa_supported(v, hw)) v = CNX_ISA_SCALAR;
    atomic_store_explicit(&g_active, v, memory_order_relaxed);
}

const char *cnx_isa_name(cnx_isa isa) {
    switch (isa) {
    case CNX_ISA_SCALAR: return "scalar";
    case CNX_ISA_AVX2: return "avx2";
    case CNX_ISA_AVX512: return "avx512";
    case CNX_ISA_NEON: return "neon";
    }
    return "unknown";
}
