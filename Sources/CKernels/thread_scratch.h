// Private to Sources/CKernels: per-thread scratch buffers for the kernels' own copies (the
// depthwise pass's blocked rows, the GEMM's repacked A rows), grown as needed, reused across
// calls and freed when the thread ends.
#ifndef CNX_THREAD_SCRATCH_H
#define CNX_THREAD_SCRATCH_H

#include <stddef.h>

enum {
    CNX_SCRATCH_DWCONV = 0,  // fast_dwconv.c: the input rows of a group, channel-blocked
    CNX_SCRATCH_GEMM_A = 1,  // fast_gemm.c: a row block's K block of A, rows spread over L1's sets
    CNX_SCRATCH_SLOTS = 2
};

/// The calling thread's buffer `slot`, at least `floats` floats, 64-byte aligned; its contents
/// are not kept when it grows. NULL when memory is short (the caller then works in place).
float *cnx_thread_scratch(int slot, size_t floats);

#endif
