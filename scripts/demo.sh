#!/usr/bin/env bash
# The main job on the bundled model: convert it to .cnx, inspect the result, run it and compare
# with ONNX Runtime's recorded output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product convnext-convert >&2
tool=.build/release/convnext-convert
fixture=Fixtures/models/timm_linear_dynamo
work=$(mktemp -d)
"$tool" "$fixture/model.onnx" "$work/model.cnx"
echo
"$tool" inspect "$work/model.cnx" | head -30
echo
"$tool" run "$work/model.cnx" --input "$fixture/input.npy" --output "$work/logits.npy"
"$tool" run "$fixture/model.onnx" --input "$fixture/input.npy" --output "$work/reference.npy" 2>/dev/null
echo "logits written to $work/logits.npy (reference executor on the ONNX file: $work/reference.npy)"
