#!/usr/bin/env bash
# The int8 benchmark, one command from the repository root (see Benchmarks/INT8.md):
#
#   bash Benchmarks/run_int8.sh [--quick] [--batch 1,8] [--rounds N] [--iterations K] [--reuse]
#                               [--our-method M] [--no-build] [--no-ours]
#
# Sets up .venv-bench and the full-size ConvNeXt-T export (Benchmarks/setup_venv.sh --model),
# builds the release binary, then runs Benchmarks/bench_int8.py with the remaining arguments:
# ONNX Runtime static int8 (QDQ, per-channel), OpenVINO on that QDQ model and convnext-convert's
# int8 .cnx, quantized and measured in one run. Results: Benchmarks/results/int8.json, the
# quantized models in Benchmarks/results/int8/ (git-ignored).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        *) args+=("$a") ;;
    esac
done

bash "$HERE/setup_venv.sh" --model

mkdir -p "$HERE/results"
if [ "$build" = 1 ]; then
    log="$HERE/results/build_int8.log"
    if swift build -c release --product convnext-convert >"$log" 2>&1; then
        :
    else
        echo "warning: the release build failed (last lines of $log below); this project's rows are skipped" >&2
        tail -n 5 "$log" >&2
        args+=("--no-ours")
    fi
fi

exec "$ROOT/.venv-bench/bin/python" "$HERE/bench_int8.py" ${args[@]+"${args[@]}"}
