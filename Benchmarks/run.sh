#!/usr/bin/env bash
# The speed benchmark, one command from the repository root:
#
#   bash Benchmarks/run.sh [--quick] [--batch 1,8] [--threads 2] [--rounds N] [--iterations K]
#                          [--model PATH] [--no-build] [--no-ours] [--no-reference]
#                          [--no-backbone | --backbone-only]
#
# Sets up .venv-bench (PyPI: onnxruntime, openvino, numpy, onnx), makes the full-size ConvNeXt-T
# exports if they are missing (classifier and features_only backbone; fixtures venv, torch), builds
# the release binary, then runs
# Benchmarks/bench.py with the remaining arguments. Results: Benchmarks/results/latest.json.
# OPENBLAS_* and the rest of the environment are passed through unchanged.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

build=1
want_model=1
want_backbone=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --no-backbone) want_backbone=0; args+=("$a") ;;
        --backbone-only) want_model=0; args+=("$a") ;;
        *) args+=("$a") ;;
    esac
done
setup_args=()
[ "$want_model" = 1 ] && setup_args+=(--model)
[ "$want_backbone" = 1 ] && setup_args+=(--backbone)

bash "$HERE/setup_venv.sh" ${setup_args[@]+"${setup_args[@]}"}

mkdir -p "$HERE/results"
if [ "$build" = 1 ]; then
    log="$HERE/results/build.log"
    if swift build -c release --product convnext-convert >"$log" 2>&1; then
        :
    else
        echo "warning: the release build failed (last lines of $log below); this project's rows are skipped" >&2
        tail -n 5 "$log" >&2
        args+=("--no-ours")
    fi
fi

exec "$ROOT/.venv-bench/bin/python" "$HERE/bench.py" ${args[@]+"${args[@]}"}
