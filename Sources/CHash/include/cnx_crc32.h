// CRC-32 for the `.cnx` checksums (Formats/CNX.md, Conventions): the CRC of ISO 3309 / ITU-T
// V.42 that zlib, gzip and PNG compute (reflected polynomial 0xEDB88320, initial value and final
// XOR 0xFFFFFFFF). Plain C, so that the file format needs neither zlib nor the kernels.
#ifndef CNX_CRC32_H
#define CNX_CRC32_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Continues `crc` over `count` bytes at `data` and returns the new value; start with 0. The
/// same contract as zlib's crc32(): cnx_crc32(cnx_crc32(0, a, n), b, m) is the CRC of a then b.
/// `data` may be NULL when `count` is 0.
uint32_t cnx_crc32(uint32_t crc, const void *data, size_t count);

/// The same value a byte at a time (the specification cnx_crc32 is tested against).
uint32_t cnx_crc32_ref(uint32_t crc, const void *data, size_t count);

#ifdef __cplusplus
}
#endif
#endif
