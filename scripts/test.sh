#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the build needs, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
swift test --skip-build --disable-swift-testing
