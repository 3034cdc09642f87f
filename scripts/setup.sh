#!/usr/bin/env bash
# Installs the Debian packages the build needs. Idempotent, and silent when they are present.
set -euo pipefail
packages=(libprotobuf-c-dev protobuf-c-compiler libopenblas-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev time)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected a Swift 5.10+ toolchain)" >&2; exit 1; }
