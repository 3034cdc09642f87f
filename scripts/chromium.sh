#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium when it is missing (for the HTML report test) and
# prints the path of the browser. Idempotent: silent apart from the path when it is present.
set -euo pipefail
find_browser() {
  for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}
if ! find_browser >/dev/null; then
  echo "chromium.sh: installing chromium" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
find_browser
