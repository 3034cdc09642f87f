#!/usr/bin/env bash
# Installs the Debian packages the build needs. Idempotent, and silent when they are present.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/packages.sh"
install_missing setup libprotobuf-c-dev protobuf-c-compiler libopenblas-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev time
command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected a Swift 5.10+ toolchain)" >&2; exit 1; }
