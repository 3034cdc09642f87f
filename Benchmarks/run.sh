#!/usr/bin/env bash
# The speed benchmark, one command from the repository root (see Benchmarks/README.md):
#
#   bash Benchmarks/run.sh [--quick] [--models t224,b384] [--batch 1,8] [--threads 2] [--rounds N]
#                          [--iterations K] [--reuse] [--no-build] [--no-ours] [--backbone | --backbone-only]
#
# Sets up .venv-bench (PyPI: onnxruntime, openvino, numpy, onnx), makes the full-size exports if
# they are missing (ConvNeXt-T 224, ConvNeXt-B 384; with --backbone the features_only backbone;
# fixtures venv, torch), builds the release binary, then runs Benchmarks/bench.py with the
# remaining arguments. Results: Benchmarks/results/latest.json. The environment (OPENBLAS_*,
# CNX_ISA, ...) is passed through unchanged.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

build=1
setup_args=(--model)
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --backbone) setup_args+=(--backbone); args+=("$a") ;;
        --backbone-only) setup_args=(--backbone); args+=("$a") ;;
        *) args+=("$a") ;;
    esac
done

bash "$HERE/setup_venv.sh" "${setup_args[@]}"

if [ "$build" = 1 ]; then
    bash "$HERE/release_build.sh" || args+=(--no-ours)
fi

exec "$ROOT/.venv-bench/bin/python" "$HERE/bench.py" ${args[@]+"${args[@]}"}
