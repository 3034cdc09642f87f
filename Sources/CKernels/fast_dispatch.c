// Run-time choice of the float kernels' path: the CPU's features (cnx_cpu.h, lowered by CNX_ISA)
// or cnx_isa_force. The choice is cached in one atomic int that every fast_* entry point reads.
#include "cnx_cpu.h"
#include "cnx_fast.h"

#include <stdatomic.h>

// The float paths a feature set allows, best first.
static cnx_isa isa_of(unsigned f) {
    if (f & CNX_CPU_AVX512) return CNX_ISA_AVX512;
    if (f & CNX_CPU_AVX2) return CNX_ISA_AVX2;
    if (f & CNX_CPU_NEON) return CNX_ISA_NEON;
    return CNX_ISA_SCALAR;
}

// x86 levels nest (scalar < avx2 < avx512); on arm64 only scalar and neon exist.
static int isa_supported(int isa, cnx_isa hw) {
    if (hw == CNX_ISA_NEON) return isa == CNX_ISA_SCALAR || isa == CNX_ISA_NEON;
    return isa >= 0 && isa <= (int)hw;
}

static _Atomic int g_active = -1;  // the path in use; -1 = not chosen yet

cnx_isa cnx_isa_detect(void) { return isa_of(cnx_cpu_features()); }

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
    const cnx_isa hw = isa_of(cnx_cpu_hardware());
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
