#!/usr/bin/env bash
# The Python package (python/): installs it with pip into a virtual environment (.venv-python,
# git-ignored, made with the machine's python3 and seeing its numpy) together with the built
# libcnxruntime, then runs python/tests/test_cnxruntime.py against the built command-line tool.
# Expects a build (`swift build`, or CONFIG=release after `swift build -c release`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
config=${CONFIG:-debug}
lib=$repo/.build/$config/libcnxruntime.so
[[ $(uname) == Darwin ]] && lib=$repo/.build/$config/libcnxruntime.dylib
tool=$repo/.build/$config/convnext-convert
for f in "$lib" "$tool"; do
  [[ -f $f ]] || { echo "python-test: $f not found: build first (swift build)" >&2; exit 1; }
done
python3 -c "import numpy" 2>/dev/null || { echo "python-test: python3 with numpy is needed" >&2; exit 1; }
venv=$repo/.venv-python
[[ -x $venv/bin/python ]] || python3 -m venv --system-site-packages "$venv"
# setuptools builds the wheel with `wheel` (from PyPI, once, if the machine's python lacks it).
"$venv/bin/python" -c "import wheel" 2>/dev/null || "$venv/bin/python" -m pip install --quiet "wheel==0.43.0"
# No build isolation: the build uses the setuptools already present, and nothing is downloaded.
CNXRUNTIME_LIBRARY=$lib "$venv/bin/python" -m pip install --quiet --no-build-isolation --no-deps --force-reinstall "$repo/python"
rm -rf "$repo/python/build" "$repo/python/cnxruntime.egg-info"
# From another folder, so that `import cnxruntime` is the installed package, not python/.
cd "${TMPDIR:-/tmp}"
CNX_REPO=$repo CNX_TOOL=$tool CNX_EXPECT_BUNDLED=1 "$venv/bin/python" "$repo/python/tests/test_cnxruntime.py"
