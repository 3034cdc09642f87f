#!/usr/bin/env bash
# The runtime links no system library but libc and libm (issue 16, part 3): programs that link
# only the runtime must list none of OpenBLAS, protobuf-c, zlib, libjpeg or libpng among their
# shared libraries (ldd, which lists them transitively). Checked on:
#   - libcnxruntime.so, the C API's shared library (product `cnxruntime`);
#   - examples/c/classify.c compiled against it;
#   - runtime-only-example (Examples/RuntimeOnly), a Swift program that depends on the
#     CNXRuntime product alone.
# (CNXKit is not runtime-only: it decodes images with libjpeg and libpng.)
# Both programs are also run on a fixture model converted by the tool, so what is checked are
# working programs (Tests/CAPITests compares the C example's logits with the CLI's).
# The check itself is shown able to fail: the convnext-convert tool, which links the importer
# and the image codecs, must be flagged.
# Usage: scripts/ldd-test.sh [debug|release]   (default debug; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-debug}
[[ $(uname -s) == Linux ]] || { echo "ldd-test: Linux only (ldd)"; exit 0; }

forbidden='libopenblas|libprotobuf-c|libz\.so|libjpeg|libpng'

swift build -c "$config" --product cnxruntime
swift build -c "$config" --product runtime-only-example
swift build -c "$config" --product convnext-convert
bin=$(swift build -c "$config" --show-bin-path)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 examples/c/classify.c -I Sources/CNXRuntimeC/include -L "$bin" -lcnxruntime \
   -Wl,-rpath,"$bin" -o "$out/classify"

# Prints the forbidden libraries FILE needs (nothing when clean); fails if ldd cannot read it.
forbidden_in() {
  local libs
  libs=$(ldd "$1") || { echo "ldd-test: ldd failed on $1" >&2; return 2; }
  # ldd must have resolved something, or an empty list would pass vacuously.
  grep -q 'libc\.so' <<<"$libs" || { echo "ldd-test: no libc in ldd $1" >&2; return 2; }
  grep -Eo "($forbidden)[^ ]*" <<<"$libs" | sort -u || true
}

status=0
for f in "$bin/libcnxruntime.so" "$out/classify" "$bin/runtime-only-example"; do
  found=$(forbidden_in "$f")
  if [[ -n $found ]]; then
    echo "FAIL $(basename "$f") links: $(tr '\n' ' ' <<<"$found")"
    status=1
  else
    echo "ok   $(basename "$f"): $(ldd "$f" | awk '{print $1}' | grep -v '^linux-vdso' | tr '\n' ' ')"
  fi
done

# The negative control: the full tool links protobuf-c, zlib and the codecs, and must be flagged.
found=$(forbidden_in "$bin/convnext-convert")
for lib in libprotobuf-c libz.so libjpeg libpng; do
  if ! grep -q "^$lib" <<<"$found"; then
    echo "FAIL the check does not see $lib in convnext-convert (found: $(tr '\n' ' ' <<<"$found"))"
    status=1
  fi
done
((status)) || echo "ok   convnext-convert is flagged, as it must be: $(tr '\n' ' ' <<<"$found")"

# The runtime-only programs work.
fixture=Fixtures/models/reference_op17
"$bin/convnext-convert" convert "$fixture/model.onnx" "$out/model.cnx" >/dev/null
"$bin/runtime-only-example" "$out/model.cnx" || status=1
"$out/classify" "$out/model.cnx" "$fixture/input.npy" --top 2 || status=1
exit $status
