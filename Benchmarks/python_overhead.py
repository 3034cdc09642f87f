#!/usr/bin/env python3
"""Per-call overhead of the Python package (cnxruntime, ctypes over the C API) against the Swift API.

Both sides run the same .cnx on the same input size with the same thread count:
  - Swift: `convnext-convert bench MODEL --json` (Model.predict with a reused workspace);
  - Python: cnxruntime.Model(MODEL).predict(x) (a fresh numpy output each call);
  - the floor of any ctypes call into the library (cnx_model_threads).
The two alternate for --rounds rounds, so that load from other processes hits both alike; each
side's figure is its best round's median, and the overhead per call is the difference of those
(also given: the difference of the minima, the least disturbed calls). A small model (the digits
fixture by default, about 0.1 ms a call) makes the overhead visible; on a large model it vanishes
in the run.

    swift build -c release --product convnext-convert && swift build -c release --product cnxruntime
    python3 Benchmarks/python_overhead.py                  # uses .build/release
    python3 Benchmarks/python_overhead.py --model m.cnx --threads 4 --batch 8

Needs numpy. The package is imported from python/ with CNXRUNTIME_LIBRARY pointing at the
build's library unless it is already installed. Not a test: it measures, it does not judge.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def median_ns(fn, iterations, warm_seconds=0.5):
    start = time.perf_counter()
    while time.perf_counter() - start < warm_seconds:
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples), min(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help=".cnx file (default: the digits fixture, converted)")
    ap.add_argument("--config", default="release", help="build folder under .build (default: release)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=1000, help="calls per round and side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    build = os.path.join(REPO, ".build", args.config)
    tool = os.path.join(build, "convnext-convert")
    lib = os.path.join(build, "libcnxruntime.dylib" if sys.platform == "darwin" else "libcnxruntime.so")
    for path in (tool, lib):
        if not os.path.isfile(path):
            sys.exit(f"python_overhead: {path} not found; build it: swift build -c {args.config} --product "
                     f"{'convnext-convert' if path == tool else 'cnxruntime'}")
    os.environ.setdefault("CNXRUNTIME_LIBRARY", lib)
    sys.path.insert(0, os.path.join(REPO, "python"))
    import numpy as np

    import cnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model
        if model_path is None:
            model_path = os.path.join(tmp, "digits.cnx")
            subprocess.run([tool, "convert", os.path.join(REPO, "Fixtures", "digits", "model.onnx"), model_path],
                           check=True, capture_output=True)
        model = cnxruntime.Model(model_path, threads=args.threads)
        shape = model.input_shapes[0]
        h = shape[2] if shape and shape[2] else 224
        w = shape[3] if shape and shape[3] else 224
        x = np.random.default_rng(0).standard_normal((args.batch, 3, h, w)).astype(np.float32)

        swift_meds, swift_mins, py_meds, py_mins = [], [], [], []
        for _ in range(args.rounds):
            r = subprocess.run([tool, "bench", model_path, "--threads", str(args.threads), "--batch", str(args.batch),
                                "--iterations", str(args.iterations), "--size", str(h), "--json"],
                               check=True, capture_output=True, text=True)
            swift = json.loads(r.stdout)
            swift_meds.append(swift["median_ms"] * 1e6)
            swift_mins.append(swift["min_ms"] * 1e6)
            med, low = median_ns(lambda: model.predict(x), args.iterations)
            py_meds.append(med)
            py_mins.append(low)
        threads = ctypes.c_int()
        lib_handle = cnxruntime._lib
        floor_med, _ = median_ns(lambda: lib_handle.cnx_model_threads(model._handle, ctypes.byref(threads)),
                                 args.iterations, warm_seconds=0.1)

    swift_med, py_med = min(swift_meds), min(py_meds)
    swift_min, py_min = min(swift_mins), min(py_mins)
    result = {
        "model": model_path if args.model else "Fixtures/digits (converted)",
        "input": [args.batch, 3, h, w],
        "threads": args.threads,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "swift_median_us": round(swift_med / 1e3, 2),
        "python_median_us": round(py_med / 1e3, 2),
        "swift_min_us": round(swift_min / 1e3, 2),
        "python_min_us": round(py_min / 1e3, 2),
        "overhead_per_call_us": round((py_med - swift_med) / 1e3, 2),
        "overhead_percent": round(100 * (py_med - swift_med) / swift_med, 1),
        "overhead_of_minima_us": round((py_min - swift_min) / 1e3, 2),
        "ctypes_call_floor_us": round(floor_med / 1e3, 3),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {result['model']}, input {result['input']}, {args.threads} thread(s), "
          f"{args.rounds} rounds of {args.iterations} calls a side, load average {result['load_average']}")
    print(f"  Swift Model.predict (convnext-convert bench): median {result['swift_median_us']:9.2f} us, min {result['swift_min_us']:.2f}")
    print(f"  Python cnxruntime Model.predict:               median {result['python_median_us']:9.2f} us, min {result['python_min_us']:.2f}")
    print(f"  overhead per call:                             median {result['overhead_per_call_us']:9.2f} us "
          f"({result['overhead_percent']}%), of the minima {result['overhead_of_minima_us']:.2f} us")
    print(f"  a bare ctypes call into the library:           median {result['ctypes_call_floor_us']:9.3f} us")


if __name__ == "__main__":
    main()
