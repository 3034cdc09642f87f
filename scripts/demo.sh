#!/usr/bin/env bash
# The main job on the bundled model: inspect it, then run it on the bundled input.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product convnext-convert >&2
tool=.build/release/convnext-convert
model=Fixtures/models/timm_linear_dynamo/model.onnx
"$tool" inspect "$model"
echo
out=$(mktemp -d)/logits.npy
"$tool" run "$model" --input Fixtures/models/timm_linear_dynamo/input.npy --output "$out"
echo "logits written to $out"
