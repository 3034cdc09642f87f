#!/usr/bin/env bash
# The arm64 kernels under emulation. Installs what is missing (Debian: gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user), cross-compiles the runtime's C kernels (Sources/CKernels)
# with the test driver Tests/arm64/kernels_test.c, with aarch64-linux-gnu-gcc and, when the Swift toolchain's clang is
# on PATH, with clang (what SwiftPM builds the kernels with), and runs each build under
# qemu-aarch64 on three CPU models, so that every path runs:
#   cortex-a53   baseline NEON, no dot product: float neon, int8 neon
#   neoverse-n1  + dot product (SDOT/UDOT):     int8 dotprod
#   max          + I8MM, BF16, ...:             int8 i8mm, half-precision BFDOT (neonbf16)
# Emulation checks results, not speed (see Sources/CKernels/ARM64.md).
# Usage: scripts/arm64-test.sh [--no-install] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
keep=""
while (($#)); do
  case "$1" in
    --no-install) install=0 ;;
    --keep) keep="$2"; shift ;;
    *) echo "arm64-test: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if ((install)); then
  source scripts/packages.sh
  install_missing arm64-test gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "arm64-test: $tool not found (run without --no-install)" >&2; exit 1; }
done

out=${keep:-$(mktemp -d)}
mkdir -p "$out"
[[ -n "$keep" ]] || trap 'rm -rf "$out"' EXIT

sources=(Sources/CKernels/*.c)
common=(-O2 -fno-math-errno -Wall -Wextra -Werror -ISources/CKernels/include -ISources/CKernels)

compilers=("gcc")
clang_bin=""
if command -v swift >/dev/null; then
  clang_bin="$(dirname "$(readlink -f "$(command -v swift)")")/clang"
  [[ -x $clang_bin ]] && compilers+=("clang") || clang_bin=""
fi

for cc in "${compilers[@]}"; do
  if [[ $cc == gcc ]]; then
    # GCC contracts a * b + c across statements by default; clang (SwiftPM) does not, and the
    # int8 epilogues' exactness is stated for uncontracted float arithmetic.
    aarch64-linux-gnu-gcc "${common[@]}" -ffp-contract=off "${sources[@]}" Tests/arm64/kernels_test.c -lm -o "$out/kernels_test.$cc"
  else
    "$clang_bin" --target=aarch64-linux-gnu "${common[@]}" "${sources[@]}" Tests/arm64/kernels_test.c -lm -o "$out/kernels_test.$cc"
  fi
done

declare -A expect=([cortex-a53]="neon" [neoverse-n1]="neon,dotprod" [max]="neon,dotprod,i8mm,bf16")
status=0
summary=()
for cc in "${compilers[@]}"; do
  for cpu in cortex-a53 neoverse-n1 max; do
    log="$out/$cc-$cpu.log"
    if qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" "$out/kernels_test.$cc" --label "$cpu ($cc)" --expect "${expect[$cpu]}" >"$log" 2>&1; then
      :
    else
      status=1
    fi
    grep -E '^(arm64 kernels|path |FAIL)' "$log" | head -40
    summary+=("$cpu ($cc): $(tail -1 "$log")")
  done
done
echo "arm64-test summary:"
printf '  %s\n' "${summary[@]}"
exit $status
