#!/usr/bin/env bash
# Builds and runs the kernel microbenchmark with the flags the package uses for CKernels
# (-O2 -fno-math-errno, no -march: the SIMD paths carry their own target attributes).
#   bash Benchmarks/kernels/run.sh            # full table
#   bash Benchmarks/kernels/run.sh --quick    # GEMM at m = 256 only
#   options: --shape M,K,N (repeatable: those GEMM shapes instead of the table), --repeats N (default 9), --lda-pad P (A's rows k + P floats apart), --gemm (GEMM table only), --dw (depthwise only), --act (activations and norms only: GEMM epilogues, elementwise), --min (best of the repeats instead of the median),
#            --cpu (time with the thread CPU clock, steadier when the cores are shared)
# CNX_ISA=avx2 (etc.) lowers the paths tried; OPENBLAS_CORETYPE is left as the environment sets it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-${TMPDIR:-/tmp}/cnx-bench-kernels}"
EXTRA_CFLAGS="${EXTRA_CFLAGS:-}"   # e.g. -DGEMM_KC=256 -DGEMM_MC=56 to try other blockings
CC="${CC:-clang}"
K="$ROOT/Sources/CKernels"
"$CC" -O2 -fno-math-errno -std=gnu11 $EXTRA_CFLAGS -I"$ROOT/Sources/CKernels/include" \
    -I/usr/include/x86_64-linux-gnu/openblas-pthread \
    "$HERE/bench_kernels.c" "$K"/*.c -o "$OUT" -lopenblas -lm -lpthread
exec "$OUT" "$@"
