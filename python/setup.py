"""Bundles the built libcnxruntime into the package when it is installed.

`pip install ./python` after `swift build` (or `swift build -c release --product cnxruntime`)
copies the library it finds into cnxruntime/lib/: CNXRUNTIME_LIBRARY if set (a path to the
library), else ../.build/release, else ../.build/debug. Without one the package still installs
and looks for the library at import time (see cnxruntime/_library.py).
"""
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "libcnxruntime.dylib" if sys.platform == "darwin" else "libcnxruntime.so"


def built_library():
    env = os.environ.get("CNXRUNTIME_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise SystemExit(f"CNXRUNTIME_LIBRARY={env}: no such file")
        return env
    for config in ("release", "debug"):
        path = os.path.join(HERE, os.pardir, ".build", config, NAME)
        if os.path.isfile(path):
            return os.path.normpath(path)
    return None


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = built_library()
        if lib is None:
            print(f"cnxruntime: no {NAME} found (build it with `swift build`, or set CNXRUNTIME_LIBRARY); "
                  "the package will look for it when imported", file=sys.stderr)
            return
        target = os.path.join(self.build_lib, "cnxruntime", "lib")
        os.makedirs(target, exist_ok=True)
        shutil.copy2(lib, os.path.join(target, NAME))
        print(f"cnxruntime: bundled {lib}", file=sys.stderr)


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
