#!/usr/bin/env bash
# The full-size checkpoint check of issue #11 (slow, several GB: not in CI):
#
#   bash scripts/full-size-check.sh [xxlarge|tiny] [--no-build]
#
# Makes (once) a random-weight timm checkpoint of the given size with PyTorch's logits
# (Fixtures/make_checkpoints.py --full-size, into the git-ignored Fixtures/large/), then converts
# each form people download -- model.safetensors, model.pth and, for xxlarge, the 3-shard
# model.safetensors.index.json -- with the release binary under GNU time, runs the .cnx on the
# saved input and prints, per form: max |ours - PyTorch| / max |PyTorch|, same top-1, the
# conversion's peak resident memory against the checkpoint's size (the bound is 1.2x) and its wall
# time. Exit status 1 when a form misses the 1e-5 bound, the top-1 or the memory bound.
set -euo pipefail
cd "$(dirname "$0")/.."
which=xxlarge
build=1
for a in "$@"; do
    case "$a" in
        xxlarge | tiny) which="$a" ;;
        --no-build) build=0 ;;
        *) echo "usage: bash scripts/full-size-check.sh [xxlarge|tiny] [--no-build]" >&2; exit 2 ;;
    esac
done
name="convnext_$which"
dir="Fixtures/large/${name}_checkpoint"
bash Fixtures/setup_venv.sh >/dev/null
py=.venv-fixtures/bin/python
if [ ! -f "$dir/expected.npy" ]; then
    "$py" Fixtures/make_checkpoints.py --full-size "$which"
fi
[ "$build" = 1 ] && swift build -c release --product convnext-convert >/dev/null
bin=.build/release/convnext-convert
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

forms=("$dir/model.safetensors" "$dir/model.pth")
[ "$which" = xxlarge ] && forms+=("$dir/sharded/model.safetensors.index.json")
status=0
for form in "${forms[@]}"; do
    # The checkpoint's size: the file, or every shard an index names.
    if [[ "$form" == *.index.json ]]; then
        size=$(du -cb "$(dirname "$form")"/*.safetensors | tail -1 | cut -f1)
    else
        size=$(stat -c %s "$form")
    fi
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$out/rss" "$bin" convert "$form" "$out/model.cnx" >"$out/convert.log" 2>&1 || {
        echo "$form: conversion failed: $(tail -1 "$out/convert.log")"
        status=1
        continue
    }
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    peak_kb=$(tail -1 "$out/rss")
    "$bin" run "$out/model.cnx" --input "$dir/input.npy" --output "$out/logits.npy" >/dev/null
    "$py" - "$form" "$dir/expected.npy" "$out/logits.npy" "$size" "$peak_kb" "$wall" <<'EOF' || status=1
import sys
import numpy as np
form, expected, ours, size, peak_kb, wall = sys.argv[1:]
e, o = np.load(expected), np.load(ours)
err = float(np.abs(o - e).max() / np.abs(e).max())
top = bool((o.argmax(-1) == e.argmax(-1)).all())
ratio = int(peak_kb) * 1024 / int(size)
ok = err <= 1e-5 and top and ratio <= 1.2
print(f"{form}: error {err:.2e} (bound 1e-5), top-1 {'same' if top else 'DIFFERENT'}, "
      f"peak {int(peak_kb) / 1024 / 1024:.2f} GB = {ratio:.2f}x the checkpoint's {int(size) / 1e9:.2f} GB "
      f"(bound 1.2x), {float(wall):.0f} s: {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
EOF
    grep -E "^assumed" "$out/convert.log" | sed 's/^/    /' || true
done
exit "$status"
