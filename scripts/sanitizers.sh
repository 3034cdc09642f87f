#!/usr/bin/env bash
# The test suite under the address sanitizer, then under the thread sanitizer (issue #7).
#
#   bash scripts/sanitizers.sh            both
#   bash scripts/sanitizers.sh address    one of them (address, thread)
#   bash scripts/sanitizers.sh thread --filter ReliabilityTests    extra arguments go to swift test
#
# Each sanitizer has its own build folder (.build-asan/, .build-tsan/; git-ignored), so neither
# disturbs the normal build. Swift code and the C kernels are both instrumented, and the tests run
# the command-line tool built with the same flags. Any report fails the run: ASan stops at the
# first error, TSan is told to (halt_on_error), and LeakSanitizer runs at each process's exit.
# Prints how long each took.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

sanitizers=(address thread)
if (($# > 0)) && [[ $1 == address || $1 == thread ]]; then
  sanitizers=("$1")
  shift
fi
extra=("$@")

symbolizer=$(dirname "$(command -v swift)")/llvm-symbolizer
if [[ -x $symbolizer ]]; then
  export ASAN_SYMBOLIZER_PATH=$symbolizer TSAN_SYMBOLIZER_PATH=$symbolizer
fi
# Leaks inside the toolchain's own libraries, not this project's code (matched against any frame
# of the allocation's stack; what these objects reach is not reported either).
suppressions=$(mktemp)
trap 'rm -f "$suppressions"' EXIT
cat > "$suppressions" <<'SUPPRESSIONS'
# swift-corelibs-xctest keeps every test case object, and its run records, until the process
# ends; the weak-reference side tables of the objects it and Foundation.Process keep (a leading
# '$' would be an anchor in these patterns, so the mangled names start after it).
leak:name11testClosure
leak:s6XCTest0A7CaseRunC4test
leak:s6XCTest0A8SuiteRunC
leak:swift_weakAssign
# swift-foundation's file readers leak a 4 KB buffer per empty file (Data(contentsOf:), String(contentsOfFile:)).
leak:readBytesFromFile
SUPPRESSIONS
export ASAN_OPTIONS=${ASAN_OPTIONS:-"detect_leaks=1:halt_on_error=1:strict_string_checks=1"}
export LSAN_OPTIONS=${LSAN_OPTIONS:-"suppressions=$suppressions:print_suppressions=0"}
export TSAN_OPTIONS=${TSAN_OPTIONS:-"halt_on_error=1:second_deadlock_stack=1"}

status=0
summary=()
for s in "${sanitizers[@]}"; do
  case "$s" in
    address) path=.build-asan ;;
    thread) path=.build-tsan ;;
  esac
  flags=(-Xswiftc "-sanitize=$s" -Xcc "-fsanitize=$s" --build-path "$path")
  echo "sanitizers: building with -sanitize=$s into $path" >&2
  start=$(date +%s)
  swift build --build-tests "${flags[@]}"
  built=$(date +%s)
  echo "sanitizers: testing with -sanitize=$s" >&2
  if swift test --skip-build "${flags[@]}" --disable-swift-testing "${extra[@]}"; then
    result=clean
  else
    result=FAILED
    status=1
  fi
  end=$(date +%s)
  summary+=("$s: $result (build $((built - start)) s, tests $((end - built)) s)")
done
printf 'sanitizers: %s\n' "${summary[@]}" >&2
exit "$status"
