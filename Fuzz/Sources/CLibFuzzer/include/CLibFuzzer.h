// libFuzzer's driver, which the -sanitize=fuzzer runtime provides: a Swift executable has its own
// `main`, so the fuzz targets call the driver themselves instead of using libFuzzer's `main`.
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
