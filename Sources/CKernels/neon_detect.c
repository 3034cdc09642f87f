// Which optional AArch64 extensions this CPU and OS offer, for the run-time choice of the int8
// paths (cnx_qgemm.h). Baseline NEON needs no detection: every AArch64 CPU has it.
#include "neon_internal.h"

#include <stdatomic.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
// The kernel's bits (asm/hwcap.h), spelled out for older headers.
#define CNX_HWCAP_ASIMDDP (1ul << 20)
#define CNX_HWCAP2_I8MM (1ul << 13)
#define CNX_HWCAP2_BF16 (1ul << 14)

static unsigned detect(void) {
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    unsigned f = 0;
    if (hw & CNX_HWCAP_ASIMDDP) f |= CNX_ARM64_DOTPROD;
    if (hw2 & CNX_HWCAP2_I8MM) f |= CNX_ARM64_I8MM;
    if (hw2 & CNX_HWCAP2_BF16) f |= CNX_ARM64_BF16;
    return f;
}
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>

static int sysctl_flag(const char *name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, NULL, 0) == 0 && value != 0;
}

static unsigned detect(void) {
    unsigned f = 0;
    if (sysctl_flag("hw.optional.arm.FEAT_DotProd")) f |= CNX_ARM64_DOTPROD;
    if (sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= CNX_ARM64_I8MM;
    if (sysctl_flag("hw.optional.arm.FEAT_BF16")) f |= CNX_ARM64_BF16;
    return f;
}
#else
// No way to ask: what the compiler was told the target has.
static unsigned detect(void) {
    unsigned f = 0;
#if defined(__ARM_FEATURE_DOTPROD)
    f |= CNX_ARM64_DOTPROD;
#endif
#if defined(__ARM_FEATURE_MATMUL_INT8)
    f |= CNX_ARM64_I8MM;
#endif
#if defined(__ARM_FEATURE_BF16)
    f |= CNX_ARM64_BF16;
#endif
    return f;
}
#endif

unsigned cnx_arm64_features(void) {
    static _Atomic int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        // Racing first calls compute the same value.
        v = (int)detect();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return (unsigned)v;
}
