#!/usr/bin/env bash
# Create (or update) the benchmark virtual env at <repo>/.venv-bench from PyPI.
# Idempotent: prints one line and does nothing when requirements.txt has not changed.
#
#   bash Benchmarks/setup_venv.sh            # the competitors' venv only
#   bash Benchmarks/setup_venv.sh --model    # also make sure the benchmark's full-size exports exist:
#                                            # ConvNeXt-T 224 (Fixtures/make_fixtures.py --full-size) and
#                                            # ConvNeXt-B 384 (Benchmarks/export_families.py --bench); needs
#                                            # torch: the fixtures venv (Fixtures/setup_venv.sh)
#   bash Benchmarks/setup_venv.sh --backbone # also make sure the full-size ConvNeXt-T features_only
#                                            # export exists (Fixtures/make_backbone.py --full-size)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$ROOT/.venv-bench"
REQ="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"

want_model=0
want_backbone=0
for a in "$@"; do
    case "$a" in
        --model) want_model=1 ;;
        --backbone) want_backbone=1 ;;
        *) echo "usage: $0 [--model] [--backbone]" >&2; exit 2 ;;
    esac
done

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating benchmark virtual env at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    :   # up to date: stay quiet
else
    echo "installing benchmark requirements into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    echo "$WANT" > "$STAMP"
    echo "done: $("$VENV/bin/python" -c 'import onnxruntime, openvino, numpy, onnx; print("onnxruntime", onnxruntime.__version__, "openvino", openvino.__version__, "numpy", numpy.__version__, "onnx", onnx.__version__)')"
fi

if [ "$want_model" = 1 ]; then
    MODEL="$ROOT/Fixtures/large/convnext_tiny_op17/model.onnx"
    if [ ! -f "$MODEL" ]; then
        echo "full-size ConvNeXt-T export missing ($MODEL): making it with the fixtures venv (torch)"
        bash "$ROOT/Fixtures/setup_venv.sh"
        (cd "$ROOT" && "$ROOT/.venv-fixtures/bin/python" Fixtures/make_fixtures.py --full-size "$ROOT/Fixtures/large")
    fi
    BASE="$ROOT/Fixtures/large/convnext_base_384/model.onnx"
    if [ ! -f "$BASE" ] || [ ! -f "$ROOT/Fixtures/large/convnext_base_384/expected2.npy" ]; then
        echo "full-size ConvNeXt-B 384 export missing ($BASE): making it with the fixtures venv (torch; about 2 minutes)"
        bash "$ROOT/Fixtures/setup_venv.sh"
        "$ROOT/.venv-fixtures/bin/python" "$HERE/export_families.py" --bench
    fi
fi

if [ "$want_backbone" = 1 ]; then
    BACKBONE="$ROOT/Fixtures/large/convnext_tiny_features/model.onnx"
    if [ ! -f "$BACKBONE" ]; then
        echo "full-size ConvNeXt-T backbone export missing ($BACKBONE): making it with the fixtures venv (torch)"
        bash "$ROOT/Fixtures/setup_venv.sh"
        (cd "$ROOT" && "$ROOT/.venv-fixtures/bin/python" Fixtures/make_backbone.py --full-size "$ROOT/Fixtures/large" >/dev/null)
    fi
fi
