#!/usr/bin/env bash
# Builds and runs the kernel microbenchmark with the flags the package uses for CKernels
# (-O2 -fno-math-errno, no -march: the SIMD paths carry their own target attributes).
#   bash Benchmarks/kernels/run.sh            # full table
#   bash Benchmarks/kernels/run.sh --quick    # m = 256 only
# CNX_ISA=avx2 (etc.) lowers the paths tried; OPENBLAS_CORETYPE is left as the environment sets it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${TMPDIR:-/tmp}/cnx-bench-kernels"
CC="${CC:-clang}"
"$CC" -O2 -fno-math-errno -std=gnu11 -I"$ROOT/Sources/CKernels/include" \
    -I/usr/include/x86_64-linux-gnu/openblas-pthread \
    "$HERE/bench_kernels.c" "$ROOT"/Sources/CKernels/fast_*.c \
    -o "$OUT" -lopenblas -lm
exec "$OUT" "$@"
