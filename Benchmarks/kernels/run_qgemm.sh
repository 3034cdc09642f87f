#!/usr/bin/env bash
# Builds and runs the int8 GEMM microbenchmark (bench_qgemm.c) with the flags the package uses for
# CKernels (-O2 -fno-math-errno, no -march: the SIMD paths carry their own target attributes).
#   bash Benchmarks/kernels/run_qgemm.sh            # ConvNeXt-T's 8 pointwise shapes, every int8 path
#   options: --all (every m x every (k, n): 32 shapes), --scalar (also the portable C path: slow),
#            --quick (fewer, shorter repeats), --min (best repeat instead of the median),
#            --cpu (time with the thread CPU clock, steadier when the cores are shared)
# Single-threaded. EXTRA_CFLAGS passes e.g. -DQGEMM_MR=12 -DQGEMM_A_BLOCK=131072 to try blockings.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-${TMPDIR:-/tmp}/cnx-bench-qgemm}"
EXTRA_CFLAGS="${EXTRA_CFLAGS:-}"
CC="${CC:-clang}"
"$CC" -O2 -fno-math-errno -std=gnu11 $EXTRA_CFLAGS -I"$ROOT/Sources/CKernels/include" \
    "$HERE/bench_qgemm.c" "$ROOT"/Sources/CKernels/*.c -o "$OUT" -lm -lpthread
exec "$OUT" "$@"
