#!/usr/bin/env bash
# Where int8 ConvNeXt's time goes: a perf profile of `convnext-convert bench` on an int8 .cnx,
# folded into parts (int8 GEMM dot products, their epilogues, activation quantization, depthwise,
# LayerNorm, stem/head, thread pool, ...) by Benchmarks/profile_int8.py. See Benchmarks/PROFILE.md.
#
#   bash Benchmarks/profile_int8.sh [--model M.onnx] [--size 224] [--threads 2] [--batch 1]
#                                   [--iterations 150] [--no-build] [--reuse] [--isa LEVEL]
#                                   [--cnx FILE.cnx]
#
# --model   float ONNX export to quantize (default: the full-size ConvNeXt-T,
#           Fixtures/large/convnext_tiny_op17/model.onnx, made by Benchmarks/setup_venv.sh --model)
# --size    input height and width for calibration and the run (default 224)
# --reuse   keep an int8 .cnx already in Benchmarks/results/profile/ (quantizing takes a while)
# --isa     CNX_ISA for the run (e.g. avx2 to profile the ymm paths)
# --cnx     profile this .cnx as it is (any precision: float32 and bf16 files too), no quantizing
# Needs `perf` (linux-perf) with permission to sample this user's processes
# (kernel.perf_event_paranoid <= 2). Outputs (git-ignored) in Benchmarks/results/profile/:
# NAME.int8.cnx, perf.data, report.txt (perf report by symbol and source line), profile.json.
# The profile counts CPU samples of every thread of the process: shares, not milliseconds. It
# includes loading the model (packing, checksums: their own row) and the warm-up runs; with 150
# timed iterations they are a few percent.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

model="$ROOT/Fixtures/large/convnext_tiny_op17/model.onnx"
size=224 threads=2 batch=1 iterations=150 build=1 reuse=0 isa="" given=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift ;;
        --size) size="$2"; shift ;;
        --threads) threads="$2"; shift ;;
        --batch) batch="$2"; shift ;;
        --iterations) iterations="$2"; shift ;;
        --isa) isa="$2"; shift ;;
        --cnx) given="$2"; shift ;;
        --no-build) build=0 ;;
        --reuse) reuse=1 ;;
        *) echo "usage: $0 [--model M.onnx] [--size S] [--threads T] [--batch B] [--iterations N] [--isa LEVEL] [--no-build] [--reuse] [--cnx FILE.cnx]" >&2; exit 2 ;;
    esac
    shift
done
command -v perf >/dev/null || { echo "profile_int8.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
if [ -n "$given" ]; then
    [ -f "$given" ] || { echo "profile_int8.sh: no .cnx at $given" >&2; exit 1; }
elif [ "$model" = "$ROOT/Fixtures/large/convnext_tiny_op17/model.onnx" ]; then
    bash "$HERE/setup_venv.sh" --model
fi
[ -n "$given" ] || [ -f "$model" ] || { echo "profile_int8.sh: no model at $model" >&2; exit 1; }

out="$HERE/results/profile"
mkdir -p "$out"
tool="$ROOT/.build/release/convnext-convert"
if [ "$build" = 1 ]; then
    swift build -c release --product convnext-convert >"$out/build.log" 2>&1 || { tail -n 5 "$out/build.log" >&2; exit 1; }
fi

name="$(basename "$(dirname "$model")")"
[ "$(basename "$model")" = "model.onnx" ] || name="$(basename "$model" .onnx)"
cnx="$out/$name.$size.int8.cnx"
if [ -n "$given" ]; then
    cnx="$given"
elif [ "$reuse" = 0 ] || [ ! -f "$cnx" ]; then
    # The calibration data of Benchmarks/bench_int8.py: 32 standard normal samples, seed 20240032.
    "$ROOT/.venv-bench/bin/python" -c "
import numpy as np, sys
np.save(sys.argv[1], np.random.default_rng(20240032).standard_normal((32, 3, int(sys.argv[2]), int(sys.argv[2])), dtype=np.float32))
" "$out/calib.npy" "$size"
    "$tool" quantize --int8 "$model" "$cnx" --calibration "$out/calib.npy" | tail -n 3
fi

echo "profiling $cnx: batch $batch, $threads threads, $iterations iterations${isa:+, CNX_ISA=$isa}"
if ! env ${isa:+CNX_ISA=$isa} perf record -F 1999 -o "$out/perf.data" \
    "$tool" bench "$cnx" --threads "$threads" --batch "$batch" --size "$size" --iterations "$iterations" --json \
    >"$out/bench.json" 2>"$out/perf.log"; then
    echo "profile_int8.sh: perf record failed (last lines of $out/perf.log below)" >&2
    tail -n 5 "$out/perf.log" >&2
    exit 1
fi
"$ROOT/.venv-bench/bin/python" -c "
import json, sys
d = json.load(open(sys.argv[1]))
print(f\"bench under perf: median {d['median_ms']:.2f} ms, min {d['min_ms']:.2f} ms, kernels {d['kernels']}\")
" "$out/bench.json"
perf report -i "$out/perf.data" --no-children --sort dso,sym,srcline --stdio -g none -t '|' >"$out/report.txt" 2>/dev/null
"$ROOT/.venv-bench/bin/python" "$HERE/profile_int8.py" --report "$out/report.txt" --json "$out/profile.json"
