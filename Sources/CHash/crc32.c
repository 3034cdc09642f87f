// CRC-32 (reflected polynomial 0xEDB88320), table-driven: a byte at a time for the reference,
// eight bytes at a time ("slicing by 8": eight tables, one per byte position) for the rest.
#include "cnx_crc32.h"

#include <pthread.h>

// table[0] is the classic byte table; table[k][b] is the CRC of byte b followed by k zero bytes,
// so eight bytes fold into the CRC with eight independent look-ups.
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void make_tables(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++) table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xff];
}

uint32_t cnx_crc32_ref(uint32_t crc, const void *data, size_t count) {
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < count; i++) {
        c ^= p[i];
        for (int bit = 0; bit < 8; bit++) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

uint32_t cnx_crc32(uint32_t crc, const void *data, size_t count) {
    pthread_once(&table_once, make_tables);
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    // Bytes up to an 8-byte boundary, then eight at a time, then the tail.
    while (count > 0 && ((uintptr_t)p & 7) != 0) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
        count--;
    }
    while (count >= 8) {
        // Little-endian reading of the two words; assembled from bytes so it also holds on
        // big-endian hosts (the compiler makes it one load on little-endian ones).
        const uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        const uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        const uint32_t x = c ^ lo;
        c = table[7][x & 0xff] ^ table[6][(x >> 8) & 0xff] ^ table[5][(x >> 16) & 0xff] ^ table[4][x >> 24] ^
            table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        count -= 8;
    }
    while (count > 0) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
        count--;
    }
    return ~c;
}
