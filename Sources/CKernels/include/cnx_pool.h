// A small spinning thread pool for the runtime's short parallel sections.
//
// A ConvNeXt block on a small map is a few hundred microseconds of work split into two to three
// parallel sections; waking a sleeping thread for each (as a general-purpose pool does) costs a
// large share of that. This pool keeps its workers spinning for a short while after each section
// (CNX_POOL_SPIN_US microseconds, default 50; 0 makes them sleep at once), so the next section
// starts without a wake-up, and sleeps them on a condition variable when nothing comes.
// The caller takes part: chunks are claimed one at a time from a shared counter, so a worker that
// is late (descheduled on a busy machine) never holds the section up: the caller runs its chunks.
#ifndef CNX_POOL_H
#define CNX_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What a section runs: fn(ctx, i, lane) for every chunk i in 0..<chunks, each exactly once, at
/// most one thread per chunk; chunks may run in any order on any thread. `lane` names the thread
/// that runs the chunk: 0 the caller, 1..<threads the workers; no two threads of one section have
/// the same lane, so a chunk may use per-lane scratch memory even when there are more chunks than
/// threads (chunks claimed dynamically, the faster thread taking more of them).
typedef void (*cnx_pool_fn)(void *ctx, int64_t chunk, int64_t lane);

/// Runs fn(ctx, i, lane) for i in 0..<chunks on the calling thread and up to `threads - 1` pool workers,
/// returning once every chunk has finished. Returns 0 when the pool is in use (another caller, or
/// a section started from inside a section): nothing was run and the caller must run the chunks
/// another way. Returns 1 when done. chunks must be at most 65535.
int cnx_pool_run(int64_t threads, int64_t chunks, cnx_pool_fn fn, void *ctx);

/// A share of a section's work items, [lo, hi), that threads take pieces of at once: one 64-bit
/// word (lo in the low 32 bits, hi in the high 32), changed only by compare-and-swap. Give each
/// share a cache line of its own. Items are below 2^31.
void cnx_share_set(uint64_t *share, int64_t lo, int64_t hi);

/// Items not yet taken from the share.
int64_t cnx_share_left(const uint64_t *share);

/// Takes a piece of the share: from the front (back == 0) up to `most` items; from the back half
/// of what is left, at least `least` and at most `most` items (never more than is left). Returns
/// how many items it took (0: none left) and sets *first to the first of them.
int64_t cnx_share_take(uint64_t *share, int back, int64_t most, int64_t least, int64_t *first);

#ifdef __cplusplus
}
#endif

#endif
