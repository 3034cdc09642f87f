// SHA-256 compression (FIPS 180-4) for the source fingerprint of a conversion: the SHA
// extensions where the CPU has them, portable C otherwise. The CHash target: plain C, no BLAS,
// so that the file format's module does not link the kernels.
#ifndef CNX_SHA256_H
#define CNX_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Runs the compression function over `blocks` 64-byte blocks of `data`, updating state[8]
/// (a..h). Padding is the caller's.
void cnx_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);
/// The portable twin, always available (tests compare the two).
void cnx_sha256_blocks_ref(uint32_t state[8], const uint8_t *data, size_t blocks);

#ifdef __cplusplus
}
#endif
#endif
