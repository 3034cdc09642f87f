#!/usr/bin/env bash
# The family benchmark (slow: not in CI), from the repository root:
#
#   bash Benchmarks/run_families.sh [--quick] [--families NAME,NAME] [--rounds N] [--iterations K]
#                                   [--large] [--no-build] [--binary PATH] [--budget S]
#
# Full-size, randomly weighted timm and transformers ConvNeXt variants (V2 atto / nano / tiny with zero GRN, RMS and
# simple norms, tanh GELU, SiLU, head-norm-first, overlapping stem, test_convnext, an MLP head,
# transformers ConvNeXt V1 and V2 tiny;
# --large adds convnext_large_mlp itself), exported by the legacy exporter at opset 17
# (Benchmarks/export_families.py with the fixtures venv, into Fixtures/large/families; once), the
# release binary built, then Benchmarks/families.py: per family, convert, check that the .cnx is
# fully fused and agrees with ONNX Runtime (1e-5 relative), and time ours against ONNX Runtime
# (batch 1, 2 threads, interleaved rounds). Results: Benchmarks/results/families.json.
# FIXTURES_PYTHON may name a Python with torch + timm (default: .venv-fixtures, made by
# Fixtures/setup_venv.sh when missing).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

build=1
export_args=()
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0 ;;
        --large) export_args+=(--large) ;;
        --families) export_args+=(--only "$2"); args+=(--families "$2"); shift ;;
        --families=*) export_args+=(--only "${1#*=}"); args+=("$1") ;;
        *) args+=("$1") ;;
    esac
    shift
done

bash "$HERE/setup_venv.sh"

if [ -z "${FIXTURES_PYTHON:-}" ]; then
    bash "$ROOT/Fixtures/setup_venv.sh" >/dev/null
    FIXTURES_PYTHON="$ROOT/.venv-fixtures/bin/python"
fi
"$FIXTURES_PYTHON" "$HERE/export_families.py" ${export_args[@]+"${export_args[@]}"}

if [ "$build" = 1 ]; then
    bash "$HERE/release_build.sh" || args+=(--no-ours)
fi

exec "$ROOT/.venv-bench/bin/python" "$HERE/families.py" ${args[@]+"${args[@]}"}
