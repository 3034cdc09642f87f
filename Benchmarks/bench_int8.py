#!/usr/bin/env python3
"""int8 benchmark: convnext-convert's int8 .cnx against ONNX Runtime's static int8 (QDQ,
per-channel) and OpenVINO running that same QDQ model, in one run. See Benchmarks/INT8.md.

Run it through Benchmarks/run_int8.sh (venv, model, release build):

    bash Benchmarks/run_int8.sh              # ConvNeXt-T, batch 1 and 8, 2 threads (1.5 to 3 minutes)
    bash Benchmarks/run_int8.sh --quick      # smoke run, reuses the quantized models when it can

Steps, all in this one run:
  1. data: 32 calibration samples and a held-out batch of 8, standard normal, fixed seeds
  2. ONNX Runtime: quant_pre_process + quantize_static (QDQ, per-channel, u8 activations, s8
     weights, MinMax over the 32 samples), timed under /usr/bin/time -v
  3. ours: `convnext-convert quantize --int8` (default method) and `convnext-convert convert`
     (the float32 .cnx), timed the same way
  4. numbers before timing: every row's logits on the held-out 8 samples, on exactly the session,
     compiled model or file that is timed, against ONNX Runtime float32: SQNR and top-1 agreement
  5. interleaved rounds with the quiet-round detection of bench.py; ratios, JSON in
     Benchmarks/results/int8.json

The worker processes, our tool's launcher, the statistics and the noise measurement are
bench.py's (imported, read-only); this file adds the int8 rows and the quantization steps.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True     # no Benchmarks/__pycache__ from importing bench.py
try:
    import bench as B   # helpers only: Worker protocol, launcher, statistics, noise measurement
    from bench import (NOISY_SHARE, PAUSE_S, OurBench, cpu_facts, fmt, git_state, machine_busy_s,
                       model_facts, own_cpu_s, parse_json_object, run_child, short_error,
                       stats_for_ours, stats_from_samples)
except Exception as e:  # bench.py is someone else's file: say so plainly if it cannot be imported
    print(f"error: cannot import helpers from {os.path.join(HERE, 'bench.py')}: {type(e).__name__}: {e}",
          file=sys.stderr)
    sys.exit(2)

DEFAULT_MODEL = os.path.join(ROOT, "Fixtures", "large", "convnext_tiny_op17", "model.onnx")
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "convnext-convert")
DEFAULT_RESULTS = os.path.join(HERE, "results")

CALIB_SAMPLES = 32
CALIB_SEED = 20240032      # calibration: standard normal [32, 3, H, W] float32
HELD_SAMPLES = 8
HELD_SEED = 20240008       # held-out accuracy batch: standard normal [8, 3, H, W] float32

# Worker kinds (one process per kind and batch size).
ORT_F32 = "ort_f32"
ORT_I8 = "ort_i8"
OV_I8_F32 = "ov_i8_f32"       # OpenVINO on the QDQ model, INFERENCE_PRECISION_HINT=f32
OV_I8_AUTO = "ov_i8_auto"     # the same, no precision hint (bfloat16 on CPUs with AVX512-BF16)
WORKER_KINDS = (ORT_F32, ORT_I8, OV_I8_F32, OV_I8_AUTO)
# Our rows.
OURS_I8 = "cnx_i8"
OURS_F32 = "cnx_f32"
INT8_ROWS = (ORT_I8, OV_I8_F32, OV_I8_AUTO, OURS_I8)

# Our rows: the note on start-up effects leaves out this many timed iterations of each round.
STARTUP_SKIP = 3
# Float32 rows must match ONNX Runtime float32 to this, relative to max(1, max|ref|).
F32_REL_TOL = 1e-3
# An int8 row below this SQNR (dB) against float32 is a broken model, not a quantization error.
BROKEN_SQNR_DB = 10.0
# ...and below this it is marked "low" (reported, not fatal).
LOW_SQNR_DB = 20.0


# ---------------------------------------------------------------------------------------------
# Workers. bench.py's Worker protocol (one JSON command per line); the runtimes are set up here.
# ---------------------------------------------------------------------------------------------

def worker_main(kind: str, model: str, batch: int, threads: int, hw: tuple[int, int]) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        t0 = time.perf_counter()
        if kind in (ORT_F32, ORT_I8):
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            in_name = sess.get_inputs()[0].name

            def infer(x):
                return sess.run(None, {in_name: x})[0]

            info = {"runtime": "onnxruntime", "version": ort.__version__,
                    "precision": "f32" if kind == ORT_F32 else "int8 (QDQ)",
                    "settings": {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                                 "graph_optimization_level": "ORT_ENABLE_ALL",
                                 "providers": sess.get_providers()}}
        else:
            import openvino as ov
            core = ov.Core()
            m = core.read_model(model)
            m.reshape([batch, 3, hw[0], hw[1]])    # static shape per batch, as benchmark_app does
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            if kind == OV_I8_F32:
                config["INFERENCE_PRECISION_HINT"] = "f32"
            compiled = core.compile_model(m, "CPU", config)
            request = compiled.create_infer_request()
            precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            precision = {"<Type: 'float32'>": "f32", "<Type: 'bfloat16'>": "bf16",
                         "<Type: 'float16'>": "f16"}.get(precision, precision)

            def infer(x):
                request.infer({0: x}, share_inputs=True)
                return request.get_output_tensor(0).data

            info = {"runtime": "openvino", "version": ov.get_version(), "precision": f"int8 (QDQ) + {precision}",
                    "float_precision": precision, "settings": {k: str(v) for k, v in config.items()}}
        info["load_s"] = time.perf_counter() - t0
        x = None
        reply({"ok": True, "info": info})

        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "input":
                x = np.ascontiguousarray(np.load(cmd["path"]), dtype=np.float32)
                reply({"ok": True})
            elif op == "infer_chunks":
                # The held-out samples, `batch` at a time, through exactly what is timed.
                data = np.ascontiguousarray(np.load(cmd["path"]), dtype=np.float32)
                outs = []
                for i in range(0, data.shape[0], batch):
                    chunk = np.ascontiguousarray(data[i:i + batch])
                    outs.append(np.array(infer(chunk), dtype=np.float32, copy=True))
                np.save(cmd["out"], np.concatenate(outs))
                reply({"ok": True})
            elif op == "time":
                for _ in range(cmd["warmup"]):
                    infer(x)
                samples = []
                for _ in range(cmd["iterations"]):
                    t = time.perf_counter()
                    infer(x)
                    samples.append((time.perf_counter() - t) * 1000.0)
                reply({"ok": True, "samples_ms": samples})
            elif op == "exit":
                reply({"ok": True})
                break
            else:
                reply({"ok": False, "error": f"unknown command {op}"})
    except Exception as e:
        reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


class Worker(B.Worker):
    """bench.Worker (protocol, peak RSS, close), started on this file's worker kinds."""

    def __init__(self, kind, model, batch, threads, hw):
        self.kind, self.batch = kind, batch
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", model,
               "--batch", str(batch), "--threads", str(threads), "--hw", f"{hw[0]}x{hw[1]}"]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.maxrss_mb = None
        first = self._read()
        if not first.get("ok"):
            raise RuntimeError(first.get("error", "worker failed"))
        self.info = first["info"]


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
# Helpers.
# ---------------------------------------------------------------------------------------------

def timed(cmd, timeout):
    """Runs cmd under /usr/bin/time -v (if present, else bench.py's launcher).
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


def sha256_file(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def make_data(workdir, hw, n_calib, seed_calib, n_held, seed_held):
    calib = os.path.join(workdir, f"calib{n_calib}.npy")
    held = os.path.join(workdir, f"held{n_held}.npy")
    np.save(calib, np.random.default_rng(seed_calib).standard_normal((n_calib, 3, hw[0], hw[1]), dtype=np.float32))
    np.save(held, np.random.default_rng(seed_held).standard_normal((n_held, 3, hw[0], hw[1]), dtype=np.float32))
    return calib, held


def sqnr_db(y, ref):
    y, ref = y.astype(np.float64), ref.astype(np.float64)
    noise = float(np.sum((y - ref) ** 2))
    return float("inf") if noise == 0 else 10.0 * math.log10(float(np.sum(ref ** 2)) / noise)


def check(y, ref, int8):
    if y is None or ref is None:
        return None
    if y.shape != ref.shape:
        return {"error": f"shape {list(y.shape)} != reference {list(ref.shape)}", "status": "WRONG"}
    diff = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64))))
    scale = max(1.0, float(np.max(np.abs(ref))))
    top1 = float(np.mean(np.argmax(y, axis=-1) == np.argmax(ref, axis=-1)))
    s = sqnr_db(y, ref)
    if int8:
        status = "WRONG" if s < BROKEN_SQNR_DB else ("low" if s < LOW_SQNR_DB else "ok")
    else:
        status = "ok" if diff <= F32_REL_TOL * scale else "WRONG"
    return {"max_abs_diff": diff, "scale": scale, "top1_agreement": top1, "sqnr_db": s, "status": status,
            "samples": int(ref.shape[0])}


def json_clean(v):
    """JSON without Infinity/NaN (an exact match has an infinite SQNR): those become strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


def default_iterations(args, batch):
    if args.iterations:
        return args.iterations
    return max(2, math.ceil(6 / batch)) if args.quick else max(4, math.ceil(24 / batch))


def default_warmup(args, batch):
    if args.warmup is not None:
        return args.warmup
    return 1 if (args.quick or batch > 1) else 2


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="float32 ONNX model (default: ConvNeXt-T, opset 17)")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 2)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="timed iterations per row per round (default max(4, ceil(24/batch)); --quick max(2, ceil(6/batch)))")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations before each worker's turn")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds; implies --reuse")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the quantized models and data of a previous run when their recipe matches "
                         "(their quantization times are then the recorded ones, marked 'reused')")
    ap.add_argument("--our-method", default=None,
                    help="--method for our quantize (default: the tool's own default)")
    ap.add_argument("--binary", default=DEFAULT_BINARY, help="the convnext-convert release binary")
    ap.add_argument("--no-ours", action="store_true", help="competitors only")
    ap.add_argument("--results", default=DEFAULT_RESULTS, help="where int8.json and int8/ go")
    ap.add_argument("--budget", type=float, default=270.0,
                    help="seconds after the start past which no extra round starts (default 270)")
    ap.add_argument("--no-extra-rounds", action="store_true", help="never add rounds to replace noisy ones")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one run of our tool")
    ap.add_argument("--hw", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=WORKER_KINDS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ort-quantize", nargs=3, metavar=("OUT", "CALIB", "REPORT"), default=None,
                    help=argparse.SUPPRESS)
    return ap.parse_args(argv)


LABELS = {ORT_F32: "ONNX Runtime {v} (f32)", ORT_I8: "ONNX Runtime {v} int8 (static QDQ)",
          OV_I8_F32: "OpenVINO {v} int8 QDQ (f32 hint)", OV_I8_AUTO: "OpenVINO {v} int8 QDQ (no hint: {p})",
          OURS_I8: "convnext-convert int8 .cnx", OURS_F32: "convnext-convert f32 .cnx"}
RATIO_COLS = ((ORT_F32, "t/ORTf32"), (ORT_I8, "t/ORTi8"), (OV_I8_F32, "t/OVi8"), (OV_I8_AUTO, "t/OVi8bf"))


def print_table(title, rows, refs):
    head = (f"{'runtime':<44} {'median':>7} {'p90':>7} {'img/s':>6} " +
            " ".join(f"{lbl:>8}" for _, lbl in RATIO_COLS) + f" {'RSS MB':>6} {'SQNR dB':>7} {'top-1':>6}  check")
    print(title)
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("unavailable"):
            print(f"{r['label']:<44} not available: {r['unavailable']}")
            continue
        ratios = [f"{r['median_ms'] / refs[k]:>8.2f}" if refs.get(k) else f"{'-':>8}" for k, _ in RATIO_COLS]
        c = r.get("check") or {}
        s = c.get("sqnr_db")
        sq = "-" if s is None else ("exact" if s == float("inf") else f"{s:.1f}")
        print(f"{r['label']:<44} {r['median_ms']:>7.2f} {r['p90_ms']:>7.2f} {r['ips']:>6.1f} " + " ".join(ratios) +
              f" {fmt(r.get('rss_mb'), '.0f'):>6} {sq:>7} {fmt(c.get('top1_agreement'), '.3f'):>6}  "
              f"{c.get('status', 'unverified')}")
    print()


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        h, w = (int(v) for v in args.hw.split("x"))
        return worker_main(args.worker, args.model, int(args.batch), args.threads, (h, w))
    if args.ort_quantize:
        return ort_quantize_main(args.model, *args.ort_quantize)

    t_start = time.perf_counter()
    if args.quick:
        args.reuse = True
    rounds = args.rounds if args.rounds else (2 if args.quick else 7)
    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    model = os.path.abspath(args.model)
    if not os.path.exists(model):
        print(f"error: no model at {model} (bash Benchmarks/setup_venv.sh --model makes it)", file=sys.stderr)
        return 2
    work = os.path.join(args.results, "int8")
    os.makedirs(work, exist_ok=True)
    facts = model_facts(model)
    dims = facts["input_dims"]
    hw = tuple(dims[2:4]) if all(isinstance(d, int) and d > 0 for d in dims[2:4]) else (224, 224)
    if isinstance(dims[0], int) and dims[0] > 0:
        print(f"note: the model has a fixed batch of {dims[0]}; only that batch is measured")
        batches = [dims[0]]
    cpu = cpu_facts()
    env_keep = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "CNX_"))}
    binary = os.path.abspath(args.binary)
    print(f"model: {model} ({facts['producer']}, opset {facts['opset']}, input {dims}, "
          f"{facts['parameters']:,} parameters, {facts['onnx_bytes'] / 1e6:.1f} MB)")
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, avx512_vnni={cpu['avx512_vnni']} "
          f"avx512_bf16={cpu['avx512_bf16']}; env: {' '.join(f'{k}={v}' for k, v in sorted(env_keep.items())) or '-'}")
    print(f"batches {batches}, {args.threads} threads, {rounds} rounds, iterations per round "
          f"{ {b: default_iterations(args, b) for b in batches} }, warm-up { {b: default_warmup(args, b) for b in batches} }")
    print()

    result = {"model": model, "model_facts": facts, "batches": batches, "threads": args.threads,
              "cpu": cpu, "env": env_keep, "git": git_state(), "python": platform.python_version(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "failures": [], "rows": {}}

    # --- 1. data --------------------------------------------------------------------------------
    calib, held = make_data(work, hw, CALIB_SAMPLES, CALIB_SEED, HELD_SAMPLES, HELD_SEED)
    result["data"] = {
        "calibration": {"path": calib, "shape": [CALIB_SAMPLES, 3, hw[0], hw[1]], "seed": CALIB_SEED,
                        "how": f"np.random.default_rng({CALIB_SEED}).standard_normal(shape, dtype=np.float32)",
                        "sha256": sha256_file(calib)},
        "held_out": {"path": held, "shape": [HELD_SAMPLES, 3, hw[0], hw[1]], "seed": HELD_SEED,
                     "how": f"np.random.default_rng({HELD_SEED}).standard_normal(shape, dtype=np.float32)",
                     "sha256": sha256_file(held)}}
    print(f"data: calibration {CALIB_SAMPLES} samples (seed {CALIB_SEED}), held-out {HELD_SAMPLES} (seed {HELD_SEED}), "
          f"standard normal float32 {hw[0]}x{hw[1]}, in {work}")

    # A recipe per artifact: --reuse takes a file only when its recipe matches.
    model_sha = sha256_file(model)
    recipes_path = os.path.join(work, "recipes.json")
    try:
        with open(recipes_path) as f:
            recipes = json.load(f)
    except (OSError, ValueError):
        recipes = {}

    def reusable(name, path, recipe):
        return args.reuse and os.path.exists(path) and recipes.get(name, {}).get("recipe") == recipe

    def remember(name, recipe, record):
        recipes[name] = {"recipe": recipe, "record": record}
        with open(recipes_path + ".tmp", "w") as f:
            json.dump(recipes, f, indent=1)
        os.replace(recipes_path + ".tmp", recipes_path)

    quant = {}
    # --- 2. ONNX Runtime static int8 ------------------------------------------------------------
    qdq = os.path.join(work, "model.qdq.onnx")
    ort_recipe = {"model": model_sha, "calib": result["data"]["calibration"]["sha256"], **ORT_QUANT_SETTINGS}
    if reusable("ort", qdq, ort_recipe):
        rec = dict(recipes["ort"]["record"], reused=True)
        print(f"ONNX Runtime quantize_static: reused {qdq} (recorded {rec['wall_s']:.1f} s)")
    else:
        print("ONNX Runtime quantize_static: quant_pre_process + MinMax over "
              f"{CALIB_SAMPLES} samples (QDQ, per-channel, u8/s8) ...", flush=True)
        if os.path.exists(qdq):
            os.remove(qdq)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            phases_path = tf.name
        cmd = [sys.executable, os.path.abspath(__file__), "--model", model, "--ort-quantize", qdq, calib, phases_path]
        rc, out, err, wall, rss, how = timed(cmd, args.timeout)
        rec = {"command": shlex.join(cmd), "ok": rc == 0 and os.path.exists(qdq), "wall_s": wall,
               "peak_rss_mb": rss, "measured_by": how, "settings": ORT_QUANT_SETTINGS, "reused": False}
        try:
            with open(phases_path) as f:
                rec.update(json.load(f))
        except (OSError, ValueError):
            pass
        os.remove(phases_path)
        if rec["ok"]:
            remember("ort", ort_recipe, rec)
        else:
            rec["error"] = short_error(err, out, rc)
    if rec["ok"]:
        rec["bytes"] = os.path.getsize(qdq)
        rec["qdq"] = qdq_facts(qdq)
        print(f"  {rec['wall_s']:.1f} s wall (pre-process {fmt(rec.get('pre_process_s'), '.1f')} s, "
              f"quantize_static {fmt(rec.get('quantize_static_s'), '.1f')} s), peak RSS {fmt(rec['peak_rss_mb'], '.0f')} MB, "
              f"{rec['bytes'] / 1e6:.1f} MB; quantized op inputs: {rec['qdq']['ops_with_dequantized_inputs']}, "
              f"constants per-channel {rec['qdq']['constants_per_channel']} (weights, biases), per-tensor "
              f"{rec['qdq']['constants_per_tensor']} (LayerNorm affine, layer scale, GELU constants...)")
    else:
        print(f"  FAILED: {rec['error']}")
    quant["ort"] = rec

    # --- 3. ours: int8 and float32 .cnx ---------------------------------------------------------
    ours_files = {}
    if args.no_ours:
        print("convnext-convert: skipped (--no-ours)")
    elif not os.path.exists(binary):
        print(f"convnext-convert: no binary at {binary} (swift build -c release --product convnext-convert)")
    else:
        bin_sha = sha256_file(binary)
        i8 = os.path.join(work, "model.int8.cnx")
        f32 = os.path.join(work, "model.cnx")
        method = ["--method", args.our_method] if args.our_method else []
        jobs = [("ours_int8", i8, [binary, "quantize", "--int8", model, i8, "--calibration", calib] + method),
                ("ours_f32", f32, [binary, "convert", model, f32])]
        for name, path, cmd in jobs:
            recipe = {"model": model_sha, "binary": bin_sha, "calib": result["data"]["calibration"]["sha256"],
                      "args": cmd[1:2] + cmd[2:3] + method}
            if reusable(name, path, recipe):
                rec = dict(recipes[name]["record"], reused=True)
                print(f"convnext-convert {cmd[1]}: reused {path} (recorded {rec['wall_s']:.1f} s)")
            else:
                if os.path.exists(path):
                    os.remove(path)
                print(f"convnext-convert {cmd[1]} ...", flush=True)
                rc, out, err, wall, rss, how = timed(cmd, args.timeout)
                rec = {"command": shlex.join(cmd), "ok": rc == 0 and os.path.exists(path), "wall_s": wall,
                       "peak_rss_mb": rss, "measured_by": how, "reused": False,
                       "stdout_tail": out.strip().splitlines()[-12:]}
                if rec["ok"]:
                    remember(name, recipe, rec)
                else:
                    rec["error"] = short_error(err, out, rc)
            if rec["ok"]:
                rec["bytes"] = os.path.getsize(path)
                ours_files[name] = path
                print(f"  {rec['wall_s']:.2f} s wall, peak RSS {fmt(rec['peak_rss_mb'], '.0f')} MB, "
                      f"{rec['bytes'] / 1e6:.1f} MB")
            else:
                print(f"  FAILED: {rec['error']}")
            quant[name] = rec
        if "ours_int8" in ours_files:
            rc, out, err, _, _ = run_child([binary, "inspect", ours_files["ours_int8"]], timeout=60)
            quant["ours_int8"]["inspect"] = out if rc == 0 else short_error(err, out, rc)
            for line in (out.splitlines() if rc == 0 else []):
                line = line.strip()
                if line.startswith(("quantization.method", "quantization.depthwise", "quantization.float_layers")):
                    k, v = line.split("=", 1)
                    quant["ours_int8"][k.strip()] = json.loads(v.strip()) if v.strip()[:1] in '"[' else v.strip()
            q8 = quant["ours_int8"]
            print(f"  our int8 file: method {q8.get('quantization.method', '?')}, float32 layers "
                  f"{q8.get('quantization.float_layers', '?')}, depthwise {q8.get('quantization.depthwise', '?')}")
    result["quantization"] = quant
    print()

    # --- 4. workers and numbers, before any timing ----------------------------------------------
    tmp = tempfile.mkdtemp(prefix="cnx-bench-int8-")
    held_x = np.load(held)
    inputs = {}
    for b in batches:
        inputs[b] = os.path.join(tmp, f"input_b{b}.npy")
        np.save(inputs[b], np.ascontiguousarray(held_x[[i % HELD_SAMPLES for i in range(b)]]))
    workers, unavailable, checks = {}, {}, {}
    kind_model = {ORT_F32: model, ORT_I8: qdq, OV_I8_F32: qdq, OV_I8_AUTO: qdq}
    ref = None
    load_s = {}
    for kind in WORKER_KINDS:
        for b in batches:
            key = (kind, b)
            if kind != ORT_F32 and not quant["ort"]["ok"]:
                unavailable[key] = "no QDQ model (ONNX Runtime quantization failed)"
                continue
            w = None
            try:
                w = Worker(kind, kind_model[kind], b, args.threads, hw)
                w.call(cmd="input", path=inputs[b])
                out = os.path.join(tmp, f"{kind}_b{b}_held.npy")
                w.call(cmd="infer_chunks", path=held, out=out)
                y = np.load(out)
                if kind == ORT_F32 and ref is None:
                    ref = y     # the reference: ONNX Runtime float32 on the held-out samples
                checks[key] = check(y, ref, kind != ORT_F32)
                load_s[key] = w.info["load_s"]
                workers[key] = w
            except Exception as e:
                unavailable[key] = str(e)[:400]
                if w is not None:
                    w.close()
    if ref is None:
        print("error: ONNX Runtime float32 did not run; nothing to compare with", file=sys.stderr)
        for w in workers.values():
            w.close()
        return 2
    ver = {}
    for (kind, b), w in workers.items():
        ver[kind] = (w.info["version"].split("-")[0], w.info.get("float_precision", ""))
    labels = {k: LABELS[k].format(v=ver.get(k, ("?", "?"))[0], p=ver.get(k, ("?", "?"))[1]) for k in WORKER_KINDS}
    labels.update({OURS_I8: LABELS[OURS_I8], OURS_F32: LABELS[OURS_F32]})

    ours, ours_unavailable = {}, {}
    for kind, name in ((OURS_I8, "ours_int8"), (OURS_F32, "ours_f32")):
        for b in batches:
            key = (kind, b)
            if name not in ours_files:
                ours_unavailable[key] = ("skipped (--no-ours)" if args.no_ours else
                                         quant.get(name, {}).get("error", "no binary"))
                continue
            path = ours_files[name]
            # `run` on the held-out samples, `b` at a time (the batch that is timed).
            outs, err_msg = [], None
            for i in range(0, HELD_SAMPLES, b):
                xin = os.path.join(tmp, f"{kind}_in_{i}.npy")
                yout = os.path.join(tmp, f"{kind}_out_{i}.npy")
                np.save(xin, np.ascontiguousarray(held_x[i:i + b]))
                rc, out, err, _, _ = run_child([binary, "run", path, "--input", xin, "--output", yout,
                                                "--threads", str(args.threads)], timeout=args.timeout)
                if rc != 0 or not os.path.exists(yout):
                    err_msg = short_error(err, out, rc)
                    break
                outs.append(np.load(yout))
            checks[key] = check(np.concatenate(outs), ref, kind == OURS_I8) if err_msg is None else None
            row = OurBench(binary, path, b, args.threads, labels[kind], hw)
            try:
                if err_msg is not None:
                    raise RuntimeError(f"`run` failed: {err_msg}")
                rc, out, err, _, _ = run_child(row.cmd(1), timeout=args.timeout)   # probe + page cache
                if rc != 0:
                    raise RuntimeError(short_error(err, out, rc))
                parse_json_object(out)
                ours[key] = row
            except Exception as e:
                ours_unavailable[key] = str(e)[:400]

    print(f"numbers on the {HELD_SAMPLES} held-out samples, each row on exactly what it times, "
          f"against ONNX Runtime float32:")
    for b in batches:
        for kind in WORKER_KINDS + (OURS_I8, OURS_F32):
            key = (kind, b)
            c = checks.get(key)
            if key in unavailable or key in ours_unavailable:
                print(f"  batch {b:<2} {labels[kind]:<44} not available: {unavailable.get(key) or ours_unavailable.get(key)}")
            elif c:
                s = c["sqnr_db"]
                print(f"  batch {b:<2} {labels[kind]:<44} SQNR {'exact' if s == float('inf') else f'{s:6.2f} dB'}  "
                      f"top-1 agreement {c['top1_agreement']:.3f}  max|diff| {c['max_abs_diff']:.3e}  {c['status']}")
    print()

    # --- 5. interleaved rounds (bench.py's scheme: rotate, quiet-round detection) ---------------
    samples = {key: {} for key in workers}
    t_rounds = time.perf_counter()
    pids = [w.proc.pid for w in workers.values()]
    foreign = []
    max_rounds = rounds if (args.quick or args.no_extra_rounds) else 2 * rounds
    r = 0
    while True:
        if r >= rounds:
            n_quiet = sum(1 for sh in foreign if sh is None or sh <= NOISY_SHARE)
            if n_quiet >= rounds or r >= max_rounds or time.perf_counter() - t_start > args.budget:
                break
            if r == rounds:
                print(f"  {rounds - n_quiet} noisy rounds: extra rounds (at most {max_rounds - rounds}, none started "
                      f"after {args.budget:.0f} s) to get {rounds} quiet ones")
        t_r, busy0, own0 = time.perf_counter(), machine_busy_s(), own_cpu_s(pids)
        for b in batches:
            entries = [("w", k) for k in workers if k[1] == b] + [("o", k) for k in ours if k[1] == b]
            k0 = r % len(entries) if entries else 0
            entries = entries[k0:] + entries[:k0]
            iters, warm = default_iterations(args, b), default_warmup(args, b)
            for how, key in entries:
                time.sleep(PAUSE_S)
                try:
                    if how == "w":
                        samples[key][r] = workers[key].call(cmd="time", warmup=warm, iterations=iters)["samples_ms"]
                    else:
                        ours[key].round(r, iters, args.timeout)
                except Exception as e:
                    if how == "w":
                        unavailable[key] = f"failed in round {r + 1}: {e}"[:400]
                        workers.pop(key).close()
                    else:
                        ours_unavailable[key] = f"failed in round {r + 1}: {e}"[:400]
                        ours.pop(key)
        busy1, own1 = machine_busy_s(), own_cpu_s(pids)
        share = None
        if busy0 is not None and busy1 is not None:
            wall = max(1e-6, time.perf_counter() - t_r)
            share = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
        foreign.append(share)
        print(f"  round {r + 1}/{rounds}{' (extra)' if r >= rounds else ''} done ({time.perf_counter() - t_rounds:.0f} s)"
              + ("" if share is None else f"; other processes used {100 * share:.0f}% of the CPU"
                 + ("  <- noisy" if share > NOISY_SHARE else "")), flush=True)
        r += 1
    planned, rounds = rounds, r
    quiet = [i for i, sh in enumerate(foreign) if sh is None or sh <= NOISY_SHARE]
    keep = set(quiet) if len(quiet) >= max(1, (planned + 1) // 2) else set(range(rounds))
    noisy = sorted(set(range(rounds)) - set(quiet))
    result.update({"foreign_cpu_share_by_round": foreign, "rounds": rounds, "rounds_planned": planned,
                   "rounds_used": sorted(keep), "loadavg_end": os.getloadavg(), "noisy": False})
    if noisy and len(keep) < rounds:
        print(f"  statistics from the {len(keep)} quiet rounds; dropped noisy rounds {[i + 1 for i in noisy]}")
    elif noisy:
        print(f"  NOISY RUN: other processes used > {100 * NOISY_SHARE:.0f}% of the CPU in {len(noisy)} of "
              f"{rounds} rounds, too many to drop; even the ratios are distorted: rerun on a quiet machine.")
        result["noisy"] = True
    else:
        print(f"  quiet run: other processes stayed under {100 * NOISY_SHARE:.0f}% of the CPU in every round")
    print()
    for w in workers.values():
        w.close()

    # --- report -----------------------------------------------------------------------------------
    exit_code = 0
    for b in batches:
        rows, refs = [], {}
        for kind in WORKER_KINDS:
            key = (kind, b)
            if key not in workers:
                rows.append({"key": kind, "label": labels[kind], "unavailable": unavailable.get(key, "?")})
                continue
            w = workers[key]
            s = stats_from_samples([v for i in sorted(keep) for v in samples[key].get(i, [])]
                                   or [v for lst in samples[key].values() for v in lst])
            rows.append({"key": kind, "label": labels[kind], **s, "ips": b * 1000.0 / s["median_ms"],
                         "rss_mb": w.maxrss_mb, "check": checks.get(key), "info": w.info, "load_s": load_s.get(key)})
            refs[kind] = s["median_ms"]
        for kind in (OURS_I8, OURS_F32):
            key = (kind, b)
            if key in ours:
                s = stats_for_ours(ours[key], keep)
                # Our tool runs as a fresh process per round (3 warm-ups of its own); its first timed
                # iterations can still be slow. The table keeps them (conservative); this is the
                # same statistic without the first STARTUP_SKIP samples of each round.
                kept = [rj for rj in ours[key].rounds if rj["_round"] in keep] or ours[key].rounds
                lists = [rj.get("samples_ms") for rj in kept]
                steady = None
                if all(isinstance(l, list) and len(l) > 2 * STARTUP_SKIP for l in lists):
                    first = [v for l in lists for v in l[:STARTUP_SKIP]]
                    steady = stats_from_samples([v for l in lists for v in l[STARTUP_SKIP:]])
                    steady["first_samples_mean_ms"] = float(np.mean(first))
                rows.append({"key": kind, "label": labels[kind], **s, "ips": b * 1000.0 / s["median_ms"],
                             "rss_mb": s["peak_rss_mb"], "check": checks.get(key), "rounds_json": ours[key].rounds,
                             "without_first_samples": steady})
            else:
                rows.append({"key": kind, "label": labels[kind], "unavailable": ours_unavailable.get(key, "?")})
        for row in rows:
            if (row.get("check") or {}).get("status") == "WRONG":
                exit_code = 3
                result["failures"].append(f"batch {b}: {row['label']} output is wrong ({row['check']})")
        used = f"{len(keep)} of {rounds}" if len(keep) < rounds else f"{rounds}"
        print_table(f"ConvNeXt-T int8, batch {b}, {args.threads} threads ({used} interleaved rounds x "
                    f"{default_iterations(args, b)} iterations; median/p90 in ms; t/X = median / X's median, "
                    f"< 1.00 is faster; SQNR and top-1 agreement vs ORT f32 on {HELD_SAMPLES} held-out samples)",
                    rows, refs)
        result["rows"][str(b)] = rows

    headline = {}
    for b in batches:
        rows = {r["key"]: r for r in result["rows"][str(b)] if "median_ms" in r}
        if OURS_I8 in rows:
            mine = rows[OURS_I8]["median_ms"]
            parts, h = [], {}
            for k, name in ((ORT_I8, "ORT int8"), (OV_I8_F32, "OpenVINO int8 (f32 hint)"),
                            (OV_I8_AUTO, "OpenVINO int8 (no hint)"), (ORT_F32, "ORT f32"), (OURS_F32, "our f32 .cnx")):
                if k in rows:
                    h[k] = {"time_ratio": mine / rows[k]["median_ms"], "speedup": rows[k]["median_ms"] / mine}
                    parts.append(f"{rows[k]['median_ms'] / mine:.2f}x {name}")
            headline[str(b)] = h
            print(f"batch {b}: convnext-convert int8 at {mine:.2f} ms = " + ", ".join(parts) + "  (speed-up; > 1.00: we are faster)")
    result["headline"] = headline
    for b in batches:
        for row in result["rows"][str(b)]:
            st = row.get("without_first_samples")
            if st and st["first_samples_mean_ms"] > 1.15 * st["median_ms"]:
                print(f"note: batch {b}, {row['label']}: the first {STARTUP_SKIP} timed iterations of each round average "
                      f"{st['first_samples_mean_ms']:.2f} ms, {st['first_samples_mean_ms'] / st['median_ms']:.2f}x the rest "
                      f"(a fresh process per round; its own 3 warm-ups are not enough). Without them: median "
                      f"{st['median_ms']:.2f} ms, p90 {st['p90_ms']:.2f} ms (the table keeps them)")
    print()

    # Quantization and files.
    f32_onnx = facts["onnx_bytes"]
    print(f"{'quantization / conversion':<44} {'wall s':>7} {'peak RSS MB':>11} {'file MB':>8} {'x f32 file':>10}  notes")
    q = quant.get("ort", {})
    if q.get("ok"):
        print(f"{'ONNX Runtime quant_pre_process+quantize_static':<44} {q['wall_s']:>7.1f} {fmt(q['peak_rss_mb'], '.0f'):>11} "
              f"{q['bytes'] / 1e6:>8.1f} {q['bytes'] / f32_onnx:>10.3f}  MinMax, {CALIB_SAMPLES} samples, vs the f32 .onnx"
              + (" (reused)" if q.get("reused") else ""))
    ov_loads = {b: load_s.get((OV_I8_F32, b)) for b in batches}
    print(f"{'OpenVINO: compiles the QDQ model (no tool)':<44} {'-':>7} {'-':>11} {'-':>8} {'-':>10}  compile_model "
          + ", ".join(f"batch {b}: {fmt(v, '.1f')} s" for b, v in ov_loads.items()))
    q8, qf = quant.get("ours_int8", {}), quant.get("ours_f32", {})
    if q8.get("ok"):
        vs = f"{q8['bytes'] / qf['bytes']:>10.3f}" if qf.get("ok") else f"{'-':>10}"
        print(f"{'convnext-convert quantize --int8':<44} {q8['wall_s']:>7.2f} {fmt(q8['peak_rss_mb'], '.0f'):>11} "
              f"{q8['bytes'] / 1e6:>8.1f} {vs}  {q8.get('quantization.method', args.our_method or 'default method')}, "
              f"{CALIB_SAMPLES} samples, vs our f32 .cnx"
              + (" (reused)" if q8.get("reused") else ""))
    if qf.get("ok"):
        print(f"{'convnext-convert convert (f32)':<44} {qf['wall_s']:>7.2f} {fmt(qf['peak_rss_mb'], '.0f'):>11} "
              f"{qf['bytes'] / 1e6:>8.1f} {qf['bytes'] / f32_onnx:>10.3f}  vs the f32 .onnx ({f32_onnx / 1e6:.1f} MB)"
              + (" (reused)" if qf.get("reused") else ""))
    print()
    if result["noisy"]:
        print("NOISY RUN: other processes competed for the CPU in most rounds; these ratios are not reliable")
    total = time.perf_counter() - t_start
    result["total_s"] = total
    print(f"total: {total:.0f} s")
    out_json = os.path.join(args.results, "int8.json")
    with open(out_json + ".tmp", "w") as f:
        json.dump(json_clean(result), f, indent=1, default=str)
    os.replace(out_json + ".tmp", out_json)
    print(f"results: {out_json}")
    for msg in result["failures"]:
        print(f"FAILED: {msg}", file=sys.stderr)
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
