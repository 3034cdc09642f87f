#!/usr/bin/env bash
# Fuzzes one model-file reader with libFuzzer (issue #7).
#
#   bash scripts/fuzz.sh TARGET SECONDS      fuzz for SECONDS (TARGET: onnx, cnx, npy, safetensors, pth)
#   bash scripts/fuzz.sh TARGET repro FILE   run the target once on FILE (a crash, a corpus entry)
#
# The targets are the executables of the separate package in Fuzz/, built with
# `swift build -c debug -Xswiftc -sanitize=fuzzer,address --package-path Fuzz` (the C targets get
# address sanitizer too). The corpus starts from the fixtures: Fixtures/models/*/model.onnx, .cnx
# files converted from them (plus Fixtures/cnx/tiny.cnx), the fixtures' .npy files, and the
# checkpoints' .safetensors and .pth files (Fixtures/checkpoints/).
#
# Written here, all git-ignored:
#   Fuzz/seeds/TARGET/      the seeds made from the fixtures (read-only for libFuzzer)
#   Fuzz/corpus/TARGET/     what libFuzzer adds, kept between runs
#   Fuzz/artifacts/TARGET/  crash-*, leak-*, timeout-*, oom-* inputs
#   Fuzz/logs/TARGET.log    the run's output; the last lines are libFuzzer's final stats
#
# A crash found becomes a regression test: copy the input to Tests/ReliabilityTests/Crashers/TARGET/
# (see its README.md and CrasherTests.swift), fix the reader, and check that
# `swift test --filter ReliabilityTests.CrasherTests` passes.
#
# Environment: FUZZ_NICE (default 10), FUZZ_RSS_MB (default 2048: libFuzzer's RSS and single
# malloc limit, so an allocation the input's size does not justify is reported as a crash),
# FUZZ_TIMEOUT (seconds per input before it counts as a hang, default 20), FUZZ_NO_BUILD=1 (run
# the binaries already built, e.g. while someone's half-edited file breaks the build).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 TARGET SECONDS | $0 TARGET repro FILE   (TARGET: onnx, cnx, npy, safetensors, pth)" >&2; exit 2; }
(($# >= 2)) || usage
target=$1
case "$target" in
  onnx) exe=FuzzONNX ;;
  cnx) exe=FuzzCNX ;;
  npy) exe=FuzzNPY ;;
  safetensors) exe=FuzzSafetensors ;;
  pth) exe=FuzzPTH ;;
  *) usage ;;
esac

nice_level=${FUZZ_NICE:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout_s=${FUZZ_TIMEOUT:-20}
symbolizer=$(dirname "$(command -v swift)")/llvm-symbolizer
[[ -x $symbolizer ]] && export ASAN_SYMBOLIZER_PATH=$symbolizer
# protobuf-c and Foundation are not instrumented; their allocations still count.
export ASAN_OPTIONS=${ASAN_OPTIONS:-"detect_leaks=1:allocator_may_return_null=0:handle_abort=1"}

binary=Fuzz/.build/debug/$exe
if [[ ${FUZZ_NO_BUILD:-0} != 1 ]]; then
  echo "fuzz: building Fuzz/ with -sanitize=fuzzer,address" >&2
  build_log=$(mktemp)
  if ! nice -n "$nice_level" swift build -c debug --package-path Fuzz \
      -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address >"$build_log" 2>&1; then
    grep -v 'ld.gold: warning' "$build_log" | grep -E 'error' >&2 || tail -20 "$build_log" >&2
    rm -f "$build_log"
    echo "fuzz: the build failed (FUZZ_NO_BUILD=1 runs the binary already built)" >&2
    exit 1
  fi
  rm -f "$build_log"
fi
[[ -x $binary ]] || { echo "fuzz: $binary is not built" >&2; exit 1; }

if [[ $2 == repro ]]; then
  (($# == 3)) || usage
  exec "$binary" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" -timeout="$timeout_s" "$3"
fi
seconds=$2
[[ $seconds =~ ^[0-9]+$ ]] || usage

seeds=Fuzz/seeds/$target corpus=Fuzz/corpus/$target artifacts=Fuzz/artifacts/$target
mkdir -p "$seeds" "$corpus" "$artifacts" Fuzz/logs
case "$target" in
  onnx)
    for m in Fixtures/models/*/model.onnx; do cp -f "$m" "$seeds/$(basename "$(dirname "$m")").onnx"; done ;;
  npy)
    for f in Fixtures/models/*/*.npy; do cp -f "$f" "$seeds/$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
  safetensors|pth)
    for f in Fixtures/checkpoints/*/*."$target"; do
      if [[ -e $f ]]; then cp -f "$f" "$seeds/$(basename "$(dirname "$f")")-$(basename "$f")"; fi
    done ;;
  cnx)
    # The target repairs the header checksum when an input's last byte is odd (after dropping
    # it): each file is seeded as it is and with a 0x01 appended, so both paths start whole.
    tool=.build/debug/convnext-convert
    if [[ ! -x $tool ]]; then
      nice -n "$nice_level" swift build --product convnext-convert >&2
    fi
    for m in Fixtures/models/*/model.onnx Fixtures/cnx/tiny.cnx; do
      name=$(basename "$(dirname "$m")")
      out=$seeds/$name.cnx
      if [[ $m == *.cnx ]]; then
        out=$seeds/$(basename "$m")
        cp -f "$m" "$out"
      elif [[ ! -s $out ]]; then
        nice -n "$nice_level" "$tool" "$m" "$out" >/dev/null
      fi
      { cat "$out"; printf '\001'; } > "${out%.cnx}.repair.cnx"
    done ;;
esac

log=Fuzz/logs/$target.log
echo "fuzz: $exe for ${seconds}s, seeds $seeds, corpus $corpus, log $log" >&2
set +e
nice -n "$nice_level" "$binary" "$corpus" "$seeds" \
  -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout_s" \
  -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
  -artifact_prefix="$artifacts/" >"$log" 2>&1
status=$?
set -e
grep -E '^(stat::|Done|INFO: fuzzing)|^==[0-9]+==ERROR|SUMMARY|Test unit written' "$log" >&2 || true
if ((status != 0)); then
  echo "fuzz: $exe stopped with status $status; the input is in $artifacts/ (see $log)" >&2
fi
exit "$status"
