// Per-thread scratch buffers (thread_scratch.h): one pthread key, a table of slots per thread.
#include "thread_scratch.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct {
    float *data[CNX_SCRATCH_SLOTS];
    size_t floats[CNX_SCRATCH_SLOTS];
} scratch_slots;

static pthread_key_t scratch_key;
static int scratch_key_made;  // pthread_key_create succeeded (set once, under scratch_once)
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
    scratch_slots *s = p;
    for (int i = 0; i < CNX_SCRATCH_SLOTS; i++) free(s->data[i]);
    free(s);
}

static void scratch_init(void) { scratch_key_made = pthread_key_create(&scratch_key, scratch_free) == 0; }

float *cnx_thread_scratch(int slot, size_t floats) {
    if (slot < 0 || slot >= CNX_SCRATCH_SLOTS) return NULL;
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_made) return NULL;
    scratch_slots *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->floats[slot] < floats) {
        free(s->data[slot]);
        // aligned_alloc wants a size that is a multiple of the alignment (C11): whole 64-byte lines.
        const size_t rounded = (floats + 15) / 16 * 16;
        s->data[slot] = aligned_alloc(64, rounded * sizeof(float));
        s->floats[slot] = s->data[slot] ? rounded : 0;
    }
    return s->data[slot];
}
