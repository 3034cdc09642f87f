#!/usr/bin/env bash
# The release build the benchmark scripts run first (run.sh, run_families.sh), from the repository
# root: `swift build -c release --product convnext-convert`, logged to Benchmarks/results/build.log.
# On failure: a warning with the log's last lines and exit status 1 (the caller then skips this
# project's rows, --no-ours, and the competitors still run).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$HERE/results"
log="$HERE/results/build.log"
if ! (cd "$HERE/.." && swift build -c release --product convnext-convert) >"$log" 2>&1; then
    echo "warning: the release build failed (last lines of $log below); this project's rows are skipped" >&2
    tail -n 5 "$log" >&2
    exit 1
fi
