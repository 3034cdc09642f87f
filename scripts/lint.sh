#!/usr/bin/env bash
# Style check (CI runs it from .ci/run): swift-format, from the toolchain, with the repository's
# .swift-format configuration, over every Swift file of Sources, Tests, Examples and Fuzz (the
# generated protobuf code is C and not looked at). Layout included: any finding of
# `swift-format lint --strict` fails the check.
# To fix a finding: `swift-format format -i --configuration .swift-format FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

TREE=(Sources Tests Examples Fuzz/Sources)
if ! swift-format lint --strict --configuration .swift-format --parallel --recursive "${TREE[@]}"; then
    echo "lint: the findings above break .swift-format (swift-format format -i --configuration .swift-format FILE)" >&2
    exit 1
fi
echo "lint: clean"
