#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the build needs, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build --build-tests
swift test --skip-build --disable-swift-testing
# Programs that link only the runtime have no OpenBLAS, protobuf-c, zlib, libjpeg or libpng (ldd).
bash scripts/ldd-test.sh
# README.md's module graph and layout table match Package.swift.
python3 scripts/module-graph.py --check
# Sharded validation under the schedulers: a real single-node Slurm (installed and started by the
# script, stopped after) and the Kubernetes Jobs' commands run index by index.
bash scripts/scheduler-test.sh
