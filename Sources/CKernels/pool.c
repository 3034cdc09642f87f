// The spinning thread pool of cnx_pool.h.
//
// One job at a time. Its state is one 64-bit word: generation (32 bits) | chunk count (16) |
// next unclaimed chunk (16). A thread claims a chunk by a compare-and-swap that also checks the
// generation, so a worker that wakes late for a finished job cannot claim a chunk of the next one.
// The job's function and context are read only after a successful claim: the caller does not
// start another job until every claimed chunk has finished, so they are stable by then.
#define _GNU_SOURCE
#include "cnx_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CNX_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define CNX_PAUSE() __asm__ __volatile__("yield")
#else
#define CNX_PAUSE() ((void)0)
#endif

#define MAX_WORKERS 63

static _Atomic uint64_t job_word;        // generation << 32 | chunks << 16 | next
static _Atomic int64_t job_done;         // chunks finished in the current generation
static cnx_pool_fn job_fn;
static void *job_ctx;
static _Atomic int64_t job_threads;      // lanes of the current job: the caller 0, workers 1..threads-1
static atomic_flag busy = ATOMIC_FLAG_INIT;

static _Atomic int sleepers;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;

static int worker_count;                 // guarded by `busy`
static int64_t spin_ns = -1;             // set once under `busy`

static inline uint32_t gen_of(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t chunks_of(uint64_t w) { return (uint32_t)((w >> 16) & 0xffff); }
static inline uint32_t next_of(uint64_t w) { return (uint32_t)(w & 0xffff); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/// Claims and runs chunks of generation `gen` until none is left, as lane `lane`.
static void work(uint32_t gen, int64_t lane) {
    uint64_t w = atomic_load_explicit(&job_word, memory_order_acquire);
    for (;;) {
        if (gen_of(w) != gen || next_of(w) >= chunks_of(w)) return;
        if (atomic_compare_exchange_weak_explicit(&job_word, &w, w + 1, memory_order_acq_rel, memory_order_acquire)) {
            job_fn(job_ctx, (int64_t)next_of(w), lane);
            atomic_fetch_add_explicit(&job_done, 1, memory_order_release);
            w = atomic_load_explicit(&job_word, memory_order_acquire);
        }
    }
}

static void *worker_main(void *arg) {
    // This worker's lane: 1 for the first worker created, 2 for the second, ... (the caller of
    // a job is lane 0). A job of `threads` lanes leaves workers of a higher number out, so the
    // lanes that run a job's chunks are distinct and below its thread count.
    const int64_t lane = (int64_t)(intptr_t)arg;
    uint32_t seen = gen_of(atomic_load_explicit(&job_word, memory_order_acquire));
    for (;;) {
        // Spin for new work, then sleep.
        int64_t deadline = now_ns() + spin_ns;
        uint32_t gen;
        int polls = 0;
        for (;;) {
            gen = gen_of(atomic_load_explicit(&job_word, memory_order_acquire));
            if (gen != seen) break;
            CNX_PAUSE();
            if (++polls == 16) {
                polls = 0;
                // On a busy machine this worker may share a core with the thread that will post
                // the next section: after a first stretch of pure spinning, give the core away
                // between polls (a system call that returns at once when nothing else waits).
                int64_t t = now_ns();
                if (t > deadline - spin_ns + 20000) sched_yield();
                if (t > deadline) {
                    atomic_fetch_add(&sleepers, 1);
                    pthread_mutex_lock(&sleep_lock);
                    while ((gen = gen_of(atomic_load(&job_word))) == seen) pthread_cond_wait(&sleep_cond, &sleep_lock);
                    pthread_mutex_unlock(&sleep_lock);
                    atomic_fetch_sub(&sleepers, 1);
                    break;
                }
            }
        }
        seen = gen;
        if (lane < atomic_load_explicit(&job_threads, memory_order_relaxed)) work(gen, lane);
    }
    return NULL;
}

int cnx_pool_run(int64_t threads, int64_t chunks, cnx_pool_fn fn, void *ctx) {
    if (chunks <= 0) return 1;
    if (chunks > 0xffff || atomic_flag_test_and_set_explicit(&busy, memory_order_acquire)) return 0;
    if (spin_ns < 0) {
        const char *s = getenv("CNX_POOL_SPIN_US");
        long us = s ? atol(s) : 50;
        spin_ns = (us < 0 ? 0 : us) * 1000;
    }
    int64_t want = threads - 1;
    if (want > chunks - 1) want = chunks - 1;
    if (want > MAX_WORKERS) want = MAX_WORKERS;
    while (worker_count < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)(worker_count + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        worker_count++;
    }
    job_fn = fn;
    job_ctx = ctx;
    atomic_store_explicit(&job_threads, threads, memory_order_relaxed);
    atomic_store_explicit(&job_done, 0, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&job_word, memory_order_relaxed);
    uint32_t gen = gen_of(old) + 1;
    atomic_store(&job_word, ((uint64_t)gen << 32) | ((uint64_t)chunks << 16));
    if (want > 0 && atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&sleep_cond);
        pthread_mutex_unlock(&sleep_lock);
    }
    work(gen, 0);
    // Wait for the chunks the workers took: spin briefly, then give the core away between polls
    // (a worker that shares this core, on a busy machine, gets to finish).
    int polls = 0;
    int64_t yield_after = -1;
    while (atomic_load_explicit(&job_done, memory_order_acquire) < chunks) {
        CNX_PAUSE();
        if (++polls == 16) {
            polls = 0;
            int64_t t = now_ns();
            if (yield_after < 0) yield_after = t + 5000;
            else if (t > yield_after) sched_yield();
        }
    }
    atomic_flag_clear_explicit(&busy, memory_order_release);
    return 1;
}

// MARK: - Shares

void cnx_share_set(uint64_t *share, int64_t lo, int64_t hi) {
    atomic_store_explicit((_Atomic uint64_t *)share, (uint64_t)(uint32_t)hi << 32 | (uint32_t)lo, memory_order_release);
}

int64_t cnx_share_left(const uint64_t *share) {
    uint64_t w = atomic_load_explicit((_Atomic uint64_t *)share, memory_order_acquire);
    int64_t lo = (uint32_t)w, hi = (uint32_t)(w >> 32);
    return hi > lo ? hi - lo : 0;
}

int64_t cnx_share_take(uint64_t *share, int back, int64_t most, int64_t least, int64_t *first) {
    _Atomic uint64_t *word = (_Atomic uint64_t *)share;
    uint64_t w = atomic_load_explicit(word, memory_order_acquire);
    if (most < 1) most = 1;
    for (;;) {
        int64_t lo = (uint32_t)w, hi = (uint32_t)(w >> 32), left = hi - lo;
        if (left <= 0) return 0;
        int64_t n = most;
        if (back) {
            n = (left + 1) / 2;
            if (n < least) n = least;
            if (n > most) n = most;
        }
        if (n > left) n = left;
        int64_t nlo = back ? lo : lo + n, nhi = back ? hi - n : hi;
        uint64_t nw = (uint64_t)(uint32_t)nhi << 32 | (uint32_t)nlo;
        if (atomic_compare_exchange_weak_explicit(word, &w, nw, memory_order_acq_rel, memory_order_acquire)) {
            *first = back ? hi - n : lo;
            return n;
        }
    }
}
