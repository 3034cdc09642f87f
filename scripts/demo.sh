#!/usr/bin/env bash
# The main job on the bundled model (a small ConvNeXt trained on scikit-learn's digits):
# convert it to .cnx, quantize it to int8, and validate both against the original ONNX export,
# ending in the accuracy table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product convnext-convert >&2
tool=.build/release/convnext-convert
digits=Fixtures/digits
work=$(mktemp -d)
echo "== convert (recording the preprocessing the model was trained with)"
"$tool" "$digits/model.onnx" "$work/digits.cnx" --crop-pct 1 --mean 0.3054 --std 0.376
echo
echo "== quantize to int8"
"$tool" quantize --int8 "$digits/model.onnx" "$work/digits.int8.cnx" --calibration "$digits/calib.npy"
echo
echo "== run on two images"
"$tool" run "$work/digits.cnx" "$digits/test_png/3/0008.png" "$digits/test_png/7/0013.png" --top 3
echo
echo "== validate float32 .cnx against the ONNX export"
"$tool" validate "$work/digits.cnx" --reference "$digits/model.onnx" --data "$digits/test.npy" --labels "$digits/test_labels.npy" --max-drop 0
echo
echo "== validate int8 .cnx against the ONNX export"
"$tool" validate "$work/digits.int8.cnx" --reference "$digits/model.onnx" --data "$digits/test.npy" --labels "$digits/test_labels.npy" --max-drop 0.5
echo
echo "files in $work"
