#!/usr/bin/env bash
# Builds and runs the bfloat16 GEMM microbenchmark (bench_hgemm.c) with the package's flags for
# CKernels (-O2 -fno-math-errno, no -march). One thread; see Benchmarks/FP.md for the figures.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-${TMPDIR:-/tmp}/cnx-bench-hgemm}"
K="$ROOT/Sources/CKernels"
"${CC:-clang}" -O2 -fno-math-errno -std=gnu11 -I"$K/include" "$HERE/bench_hgemm.c" "$K"/*.c -o "$OUT" -lm -lpthread
exec "$OUT" "$@"
