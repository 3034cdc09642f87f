#!/usr/bin/env bash
# Create (or update) the fixture-generation virtual env at <repo>/.venv-fixtures.
# Idempotent: re-running is a no-op when requirements.txt has not changed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/../.venv-fixtures"
REQ="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual env at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
VENV="$(cd "$VENV" && pwd)"

STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "fixture venv up to date: $VENV"
    exit 0
fi

echo "installing fixture requirements into $VENV (torch is large; this can take a while)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
echo "$WANT" > "$STAMP"
echo "done: $("$VENV/bin/python" -c 'import torch, onnx, onnxruntime; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__)')"
