// Timing and allocation helpers shared by the kernel microbenchmarks (bench_kernels.c,
// bench_qgemm.c): one clock, one repeat scheme, 64-byte aligned buffers.
#ifndef CNX_BENCH_TIMING_H
#define CNX_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

// --cpu times with this thread's CPU clock: steadier when other work shares the cores.
static clockid_t clock_id = CLOCK_MONOTONIC;
// `repeats` timed runs of about `target` seconds each (at most 64); --min takes the best, else the median.
static int repeats = 7, use_min = 0;
static double target = 0.02;

static double now(void) {
    struct timespec t;
    clock_gettime(clock_id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *alloc_bytes(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) abort();
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Median (or with --min, best) seconds per call of fn(ctx).
static double time_call(void (*fn)(void *), void *ctx) {
    fn(ctx);
    double t0 = now();
    int calls = 0;
    do { fn(ctx); calls++; } while (now() - t0 < target / 3);
    const int per = calls * 3 + 1;
    const int n = repeats < 1 ? 1 : (repeats > 64 ? 64 : repeats);
    double s[64];
    for (int r = 0; r < n; r++) {
        const double t = now();
        for (int i = 0; i < per; i++) fn(ctx);
        s[r] = (now() - t) / per;
    }
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return use_min ? s[0] : s[n / 2];
}

#endif
