#!/usr/bin/env python3
"""The files the speed benchmark (bench.py) measures, made in its run: the calibration and held-out
data, ONNX Runtime's static int8 (QDQ) model, and our .cnx files (float32, bfloat16, int8), each
timed, with a recipe so that --reuse (and --quick) can take a file from an earlier run when its
inputs are the same. See Benchmarks/INT8.md for the int8 settings.

Run as a script it is only the child that bench.py times for ONNX Runtime's quantization:

    python bench_int8.py --model MODEL.onnx --ort-quantize OUT.onnx CALIB.npy REPORT.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True     # no Benchmarks/__pycache__
from benchlib import fmt, run_child, short_error  # noqa: E402

CALIB_SAMPLES = 32
CALIB_SEED = 20240032      # calibration: standard normal [32, 3, H, W] float32
HELD_SAMPLES = 8
HELD_SEED = 20240008       # held-out accuracy batch: standard normal [8, 3, H, W] float32


# ---------------------------------------------------------------------------------------------
# ONNX Runtime's static quantization (run as a child process, so that it is timed on its own).
# ---------------------------------------------------------------------------------------------

ORT_QUANT_SETTINGS = {"quant_format": "QDQ", "per_channel": True, "activation_type": "QUInt8",
                      "weight_type": "QInt8", "calibrate_method": "MinMax", "reduce_range": False,
                      "op_types_to_quantize": "default (every type ONNX Runtime's QDQ quantizer supports)",
                      "extra_options": {},
                      "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process("
                                     "skip_symbolic_shape=True; other options default)"}


def ort_quantize_main(model, out, calib, report) -> int:
    """quant_pre_process, then quantize_static; writes the phases' times to `report`."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnx

    data = np.load(calib).astype(np.float32)
    in_name = onnx.load(model, load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        """One sample at a time (the user's usual reader); MinMax does not depend on the grouping."""

        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= data.shape[0]:
                return None
            self.i += 1
            return {in_name: data[self.i - 1:self.i]}

        def rewind(self):
            self.i = 0

    pre = out + ".pre.onnx"
    t0 = time.perf_counter()
    # ONNX's own shape inference is enough here (the only symbolic dimension is the batch), and
    # the symbolic one needs sympy, which the pinned venv does not have.
    quant_pre_process(model, pre, skip_symbolic_shape=True)
    t1 = time.perf_counter()
    # No CalibMaxIntermediateOutputs: in ONNX Runtime 1.31.1 MinMaxCalibrater.collect_data clears
    # each full chunk of outputs without computing its ranges, so every complete chunk is lost (and
    # with N a multiple of the chunk size it fails with "No data is collected"). Not needed either:
    # the augmented model outputs ReduceMin/ReduceMax scalars, not whole tensors.
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options=dict(ORT_QUANT_SETTINGS["extra_options"]))
    t2 = time.perf_counter()
    os.remove(pre)
    with open(report, "w") as f:
        json.dump({"pre_process_s": t1 - t0, "quantize_static_s": t2 - t1, "samples": int(data.shape[0])}, f)
    return 0


def qdq_facts(path):
    """What the QDQ model quantized: op types with a DequantizeLinear input, per-channel weights."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    producers = {o: n for n in m.graph.node for o in n.output}
    inits = {t.name: t for t in m.graph.initializer}
    quantized, per_channel_w, per_tensor_c = {}, 0, 0
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input):
            quantized[n.op_type] = quantized.get(n.op_type, 0) + 1
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            scale = inits.get(n.input[1])
            if scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1:
                per_channel_w += 1
            else:
                per_tensor_c += 1
    return {"ops_with_dequantized_inputs": dict(sorted(quantized.items())),
            "quantize_linear_nodes": sum(1 for n in m.graph.node if n.op_type == "QuantizeLinear"),
            "constants_per_channel": per_channel_w, "constants_per_tensor": per_tensor_c}


# ---------------------------------------------------------------------------------------------
# Data, timing of the tools, recipes.
# ---------------------------------------------------------------------------------------------

def timed(cmd, timeout):
    """Runs cmd under /usr/bin/time -v (if present, else benchlib's launcher).
    Returns (rc, stdout, stderr, wall_s, peak_rss_mb, how)."""
    if os.access("/usr/bin/time", os.X_OK):
        with tempfile.NamedTemporaryFile(suffix=".txt") as rep:
            t = time.perf_counter()
            try:
                p = subprocess.run(["/usr/bin/time", "-v", "-o", rep.name] + list(cmd), capture_output=True,
                                   text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                return 124, "", f"timed out after {timeout:.0f} s", float(timeout), None, "/usr/bin/time -v"
            wall = time.perf_counter() - t
            rss = None
            with open(rep.name) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("Maximum resident set size"):
                        rss = int(line.rsplit(":", 1)[1]) / 1024.0
                    elif line.startswith("Elapsed (wall clock) time"):
                        v = line.rsplit(" ", 1)[1].split(":")
                        wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(v)))
            return p.returncode, p.stdout, p.stderr, wall, rss, "/usr/bin/time -v"
    rc, out, err, wall, rss = run_child(cmd, timeout=timeout)
    return rc, out, err, wall, rss, "wait4 launcher"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def make_data(workdir, hw):
    """The calibration samples and the held-out samples, standard normal float32 with fixed seeds
    (the models have random weights: there are no real images to use). Returns their records."""
    out = {}
    for name, n, seed in (("calibration", CALIB_SAMPLES, CALIB_SEED), ("held_out", HELD_SAMPLES, HELD_SEED)):
        path = os.path.join(workdir, f"{'calib' if name == 'calibration' else 'held'}{n}_{hw[0]}x{hw[1]}.npy")
        shape = (n, 3, hw[0], hw[1])
        np.save(path, np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))
        out[name] = {"path": path, "shape": list(shape), "seed": seed, "sha256": sha256_file(path),
                     "how": f"np.random.default_rng({seed}).standard_normal(shape, dtype=np.float32)"}
    return out


class Artifacts:
    """The files one model's benchmark makes, in `workdir`, each with a recipe (recipes.json): with
    reuse, a file whose recipe matches is taken as it is and its recorded figures are reused."""

    def __init__(self, workdir, reuse, timeout):
        self.workdir, self.reuse, self.timeout = workdir, reuse, timeout
        self.path = os.path.join(workdir, "recipes.json")
        try:
            with open(self.path) as f:
                self.recipes = json.load(f)
        except (OSError, ValueError):
            self.recipes = {}

    def make(self, name, path, cmd, recipe, what, after=None):
        """Runs cmd (timed) to make `path` unless it can be reused. after(rec) adds facts to the
        record of a new file. Returns the record: ok, wall_s, peak_rss_mb, bytes, reused, error."""
        if self.reuse and os.path.exists(path) and self.recipes.get(name, {}).get("recipe") == recipe:
            rec = dict(self.recipes[name]["record"], reused=True)
            print(f"  {what}: reused {os.path.relpath(path)} (recorded {rec['wall_s']:.1f} s)", flush=True)
            return rec
        if os.path.exists(path):
            os.remove(path)
        print(f"  {what} ...", flush=True)
        rc, out, err, wall, rss, how = timed(cmd, self.timeout)
        rec = {"command": shlex.join(cmd), "ok": rc == 0 and os.path.exists(path), "wall_s": wall,
               "peak_rss_mb": rss, "measured_by": how, "reused": False}
        if not rec["ok"]:
            rec["error"] = short_error(err, out, rc)
            print(f"    FAILED: {rec['error']}", flush=True)
            return rec
        rec["bytes"] = os.path.getsize(path)
        if after:
            after(rec)
        print(f"    {wall:.1f} s wall, peak RSS {fmt(rss, '.0f')} MB, {rec['bytes'] / 1e6:.1f} MB", flush=True)
        self.recipes[name] = {"recipe": recipe, "record": rec}
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.recipes, f, indent=1)
        os.replace(self.path + ".tmp", self.path)
        return rec


def prepare(model, workdir, binary, data, *, reuse, timeout, our_method=None, ours=True):
    """Every file the rows run: ONNX Runtime's QDQ model, and (ours) the float32, bfloat16 and int8
    .cnx. Returns {name: (path, record)} for: ort_int8, ours_f32, ours_bf16, ours_int8."""
    arts = Artifacts(workdir, reuse, timeout)
    model_sha = sha256_file(model)
    calib = data["calibration"]
    files = {}

    def ort_phases(rec):
        try:
            with open(phases) as f:
                rec.update(json.load(f))
        except (OSError, ValueError):
            pass
        rec["qdq"] = qdq_facts(qdq)

    qdq = os.path.join(workdir, "model.qdq.onnx")
    phases = os.path.join(workdir, "ort_quantize_phases.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--model", model, "--ort-quantize", qdq, calib["path"], phases]
    rec = arts.make("ort", qdq, cmd, {"model": model_sha, "calib": calib["sha256"], **ORT_QUANT_SETTINGS},
                    f"ONNX Runtime quant_pre_process + quantize_static (QDQ, per-channel, u8/s8, MinMax over "
                    f"{CALIB_SAMPLES} samples)", after=ort_phases)
    rec["settings"] = ORT_QUANT_SETTINGS
    files["ort_int8"] = (qdq, rec)
    if not ours:
        return files
    bin_sha = sha256_file(binary)
    method = ["--method", our_method] if our_method else []
    jobs = (("ours_f32", "model.cnx", ["convert", model], "convnext-convert convert (float32)"),
            ("ours_bf16", "model.bf16.cnx", ["quantize", "--bf16", model], "convnext-convert quantize --bf16"),
            ("ours_int8", "model.int8.cnx", ["quantize", "--int8", model],
             f"convnext-convert quantize --int8 ({CALIB_SAMPLES} calibration samples)"))
    for name, fname, args, what in jobs:
        path = os.path.join(workdir, fname)
        extra = ["--calibration", calib["path"]] + method if name == "ours_int8" else []
        recipe = {"model": model_sha, "binary": bin_sha, "args": args[:-1] + extra[2:],
                  "calib": calib["sha256"] if extra else None}
        files[name] = (path, arts.make(name, path, [binary] + args + [path] + extra, recipe, what))
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ort-quantize", nargs=3, metavar=("OUT", "CALIB", "REPORT"), required=True)
    args = ap.parse_args(argv)
    return ort_quantize_main(args.model, *args.ort_quantize)


if __name__ == "__main__":
    sys.exit(main())
