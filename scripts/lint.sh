#!/usr/bin/env bash
# Style check (CI runs it from .ci/run): swift-format, from the toolchain, with the repository's
# .swift-format configuration.
#
# Two levels, until the whole tree has been through the formatter:
#   1. every Swift file of the tree is held to the configuration's rules (the rules enabled in
#      .swift-format are the ones the tree meets today); layout findings (indentation, line
#      breaks, spacing) are not counted here;
#   2. the files listed in FORMATTED below are held to everything, layout included
#      (`swift-format lint --strict`). Run `swift-format format -i FILE` on a file and add it.
set -euo pipefail
cd "$(dirname "$0")/.."

FORMATTED=(
    Sources/CNXValidate
    Sources/CNXGraph/Tensor+Access.swift
    Sources/CNXRuntime/SQNR.swift
    Sources/convnext-convert/ConversionOptions.swift
    Tests/CNXValidateTests
    Tests/CNXTestSupport/Scratch.swift
    Tests/CNXTestSupport/Random.swift
    Tests/CLITests/ConverterStepsTests.swift
)
TREE=(Sources Tests Examples Fuzz/Sources)
# What the pretty-printer reports (swift-format has no switch to leave these out of `lint`).
LAYOUT='\[(Indentation|AddLines|RemoveLine|Spacing|TrailingComma|LineLength|TrailingWhitespace|EndOfLine)\]'

status=0
rules=$(swift-format lint --configuration .swift-format --parallel --recursive "${TREE[@]}" 2>&1 | grep -E 'warning|error' | grep -Ev "$LAYOUT" || true)
if [ -n "$rules" ]; then
    echo "$rules"
    echo "lint: the findings above break rules of .swift-format" >&2
    status=1
fi
if ! swift-format lint --strict --configuration .swift-format --parallel --recursive "${FORMATTED[@]}"; then
    echo "lint: files listed as formatted are not (swift-format format -i FILE)" >&2
    status=1
fi
[ "$status" = 0 ] && echo "lint: clean"
exit "$status"
