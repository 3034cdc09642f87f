#!/usr/bin/env bash
# Throughput of `validate` at dataset scale, one command from the repository root:
#
#   bash Benchmarks/run_validate.sh [--images N] [--rounds R] [--threads T] [--no-build]
#
# ConvNeXt-T int8 .cnx against its float32 .cnx reference on a folder of N JPEGs (made once by
# the fixtures venv from the bundled photographs: random crops, 500x375, quality 90), measured in
# R interleaved rounds as images per second of the whole command (loading included):
#   - decode between predictions (--decode-ahead 0: before the decoding overlap),
#   - images decoded ahead on other threads (the default, --decode-ahead 2),
#   - the reference's logits cached by an earlier --save-logits (--reference-logits).
# Prints a table of medians; run it on an otherwise idle machine.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
images=256 rounds=5 threads=$(nproc) build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --images) images=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --threads) threads=$2; shift ;;
        --no-build) build=0 ;;
        *) echo "usage: $0 [--images N] [--rounds R] [--threads T] [--no-build]" >&2; exit 2 ;;
    esac
    shift
done
bash "$HERE/setup_venv.sh" --model >/dev/null
[ "$build" = 1 ] && swift build -c release --product convnext-convert >/dev/null
tool="$ROOT/.build/release/convnext-convert"
work="$HERE/results/validate"
mkdir -p "$work"
onnx="$ROOT/Fixtures/large/convnext_tiny_op17/model.onnx"
data="$work/jpegs-$images"
if [ ! -d "$data" ]; then
    "$ROOT/.venv-fixtures/bin/python" - "$data" "$images" <<'PY'
import os, random, sys
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
random.seed(0)
photos = [Image.open(p).convert("RGB") for p in ("Fixtures/images/china.jpg", "Fixtures/images/flower.jpg")]
os.makedirs(out + ".tmp", exist_ok=True)
for i in range(n):
    im = photos[i % 2]
    w, h = im.size
    cw, ch = random.randint(w // 2, w), random.randint(h // 2, h)
    x, y = random.randint(0, w - cw), random.randint(0, h - ch)
    im.crop((x, y, x + cw, y + ch)).resize((500, 375), Image.BICUBIC).save(f"{out}.tmp/{i:06d}.jpg", quality=90)
os.rename(out + ".tmp", out)
PY
fi
[ -f "$work/tiny.cnx" ] || "$tool" convert "$onnx" "$work/tiny.cnx" >/dev/null
[ -f "$work/tiny.int8.cnx" ] || "$tool" quantize --int8 "$onnx" "$work/tiny.int8.cnx" --calibration "$data" >/dev/null
"$tool" validate "$work/tiny.int8.cnx" --reference "$work/tiny.cnx" --data "$data" --threads "$threads" \
    --save-logits "$work/ref-logits.npy" >/dev/null 2>&1
exec python3 - "$tool" "$work" "$data" "$threads" "$rounds" "$images" <<'PY'
import json, statistics, subprocess, sys, time
tool, work, data, threads, rounds, n = sys.argv[1:7]
base = [tool, "validate", f"{work}/tiny.int8.cnx", "--data", data, "--threads", threads, "--json"]
cases = {
    "decode between predictions": base + ["--reference", f"{work}/tiny.cnx", "--decode-ahead", "0"],
    "decoded ahead (default)": base + ["--reference", f"{work}/tiny.cnx"],
    "cached reference logits": base + ["--reference-logits", f"{work}/ref-logits.npy"],
}
rates = {k: [] for k in cases}
for r in range(int(rounds)):
    for name, cmd in cases.items():
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rates[name].append(int(n) / (time.perf_counter() - t0))
        json.loads(out)
print(f"validate throughput: ConvNeXt-T int8 .cnx vs float32 .cnx reference, {n} JPEGs 500x375, {threads} threads, "
      f"median of {rounds} interleaved rounds (whole command, loading included)")
first = statistics.median(rates["decode between predictions"])
for name, v in rates.items():
    m = statistics.median(v)
    print(f"  {name:30s} {m:8.1f} images/s   {m / first:5.2f}x")
PY
