#!/usr/bin/env python3
"""Speed benchmark: convnext-convert against ONNX Runtime and OpenVINO, side by side, in one run.

Run it through Benchmarks/run.sh (it sets up the venv, the model and the release build):

    bash Benchmarks/run.sh                 # ConvNeXt-T float32, batch 1 and 8, 2 threads (~3 minutes)
    bash Benchmarks/run.sh --quick         # a smoke run (~1 minute)
    bash Benchmarks/run.sh --model other.onnx --batch 1
    bash Benchmarks/run.sh --backbone-only --quick

Absolute times drift by 10 to 30% on shared machines, so every runtime is measured in the same
run, interleaved round-robin (each round: every runtime, each with its own warm-up, in an order
that rotates from round to round), and the table reports ratios. Each competitor runs in its own
worker process (one per runtime and batch size), which isolates thread pools and gives its peak
RSS; ours runs as `convnext-convert bench ... --json`, one process per round.

Before any timing, every row is checked numerically on the exact session/compiled model that is
timed: its output on fixture inputs (tiled to the batch size) against the fixture's expected.npy.
A float32 row whose output is wrong is marked WRONG and the script exits with status 3.

Then the backbone rows (--no-backbone skips them, --backbone-only runs them alone): ConvNeXt-T
features_only (Fixtures/make_backbone.py --full-size; outputs stage0..stage3) at 224x224 and
512x512, batch 1, ONNX Runtime against `convnext-convert bench MODEL.cnx --size S`, verified per
stage (max relative error < 1e-4) and interleaved and noise-checked the same way.
"""
from __future__ import annotations

import argparse
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
DEFAULT_MODEL = os.path.join(ROOT, "Fixtures", "large", "convnext_tiny_op17", "model.onnx")
DEFAULT_BACKBONE = os.path.join(ROOT, "Fixtures", "large", "convnext_tiny_features", "model.onnx")
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "convnext-convert")
DEFAULT_RESULTS = os.path.join(HERE, "results")

# Competitors' settings: the ones behind their reference measurements (Benchmarks/README.md).
ORT = "ort"
OV_F32 = "ov_f32"
OV_AUTO = "ov_auto"
COMPETITORS = (ORT, OV_F32, OV_AUTO)

# Float32 rows must match the fixture's expected output (ONNX Runtime CPU) to this tolerance,
# relative to the largest |expected| (at least 1). Rows in reduced precision (OpenVINO's
# bfloat16 pick) are reported, and checked only loosely.
F32_REL_TOL = 1e-3
LOW_PRECISION_REL_TOL = 5e-2
# The backbone rows: every output (stage) of ours and ONNX Runtime's must agree with the reference
# to this relative error, max|y - ref| / max|ref| per output.
BACKBONE_REL_TOL = 1e-4
# This project's rows: the float32 .cnx, the bfloat16 one (`quantize --bf16`, checked loosely,
# as OpenVINO's bf16 pick is) and the reference executor on the .onnx.
OUR_LABELS = {"cnx": "convnext-convert .cnx", "bf16": "convnext-convert .cnx bf16",
              "ref": "convnext-convert .onnx (reference executor)"}
# A short pause before each runtime's turn lets the previous runtime's spinning threads park.
PAUSE_S = 0.05
# A round in which other processes used more than this share of the machine's CPU is noisy.
NOISY_SHARE = 0.10


# ---------------------------------------------------------------------------------------------
# Worker: one competitor runtime at one batch size, in its own process.
# Protocol: one JSON command per line on stdin, one JSON reply per line on the original stdout.
# ---------------------------------------------------------------------------------------------

def worker_main(kind: str, model: str, batch: int, threads: int, hw: tuple[int, int],
                all_outputs: bool = False) -> int:
    # Libraries may print to stdout; keep the protocol channel private.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        t0 = time.perf_counter()
        if kind == ORT:
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            in_name = sess.get_inputs()[0].name
            out_names = [o.name for o in sess.get_outputs()]

            def infer(x):
                # Every output is computed either way; a backbone's are all kept (an .npz).
                ys = sess.run(None, {in_name: x})
                return dict(zip(out_names, ys)) if all_outputs else ys[0]

            info = {"runtime": "onnxruntime", "version": ort.__version__, "precision": "f32",
                    "settings": {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                                 "graph_optimization_level": "ORT_ENABLE_ALL",
                                 "providers": sess.get_providers()},
                    "outputs": out_names}
        else:
            if all_outputs:
                raise ValueError("all outputs: ONNX Runtime workers only")
            import openvino as ov
            core = ov.Core()
            m = core.read_model(model)
            # A static shape per batch size: OpenVINO's CPU plugin runs static shapes faster
            # (benchmark_app does the same).
            m.reshape([batch, 3, hw[0], hw[1]])
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            if kind == OV_F32:
                config["INFERENCE_PRECISION_HINT"] = "f32"
            compiled = core.compile_model(m, "CPU", config)
            request = compiled.create_infer_request()
            precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            precision = {"<Type: 'float32'>": "f32", "<Type: 'bfloat16'>": "bf16",
                         "<Type: 'float16'>": "f16"}.get(precision, precision)

            def infer(x):
                request.infer({0: x}, share_inputs=True)
                return request.get_output_tensor(0).data

            info = {"runtime": "openvino", "version": ov.get_version(), "precision": precision,
                    "settings": {k: str(v) for k, v in config.items()}}
        info["load_s"] = time.perf_counter() - t0
        x = None
        reply({"ok": True, "info": info})

        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "input":
                x = np.ascontiguousarray(np.load(cmd["path"]), dtype=np.float32)
                reply({"ok": True})
            elif op == "infer":
                y = infer(x)
                if isinstance(y, dict):
                    np.savez(cmd["out"], **{k: np.asarray(v, dtype=np.float32) for k, v in y.items()})
                else:
                    np.save(cmd["out"], np.array(y, dtype=np.float32, copy=True))
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
    except Exception as e:  # reported to the parent, which marks the row unavailable
        reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


class Worker:
    """Parent side of a competitor worker process."""

    def __init__(self, kind, model, batch, threads, hw, all_outputs=False):
        self.kind, self.batch = kind, batch
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", model,
               "--batch", str(batch), "--threads", str(threads), "--hw", f"{hw[0]}x{hw[1]}"]
        if all_outputs:
            cmd.append("--all-outputs")
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.maxrss_mb = None
        first = self._read()
        if not first.get("ok"):
            raise RuntimeError(first.get("error", "worker failed"))
        self.info = first["info"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.seek(0)
            err = self.stderr.read().decode(errors="replace").strip().splitlines()
            raise RuntimeError("worker died: " + (err[-1] if err else "no output"))
        return json.loads(line)

    def call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        if not r.get("ok"):
            raise RuntimeError(r.get("error", "worker error"))
        return r

    def close(self):
        if self.maxrss_mb is None:
            self.maxrss_mb = self.peak_rss_mb()
        try:
            self.call(cmd="exit")
            self.proc.stdin.close()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def peak_rss_mb(self):
        """VmHWM: the peak RSS of the worker's own address space (ru_maxrss would include ours)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, ValueError):
            pass
        return None


# ---------------------------------------------------------------------------------------------
# Our tool, as a subprocess.
# ---------------------------------------------------------------------------------------------

# On Linux a child's ru_maxrss (what wait4 and the child's own getrusage report) includes the
# peak RSS of the process it was spawned from: exec records the old address space's high-water
# mark. This driver holds the ONNX model in memory, so our tool is started through this tiny
# launcher (a bare interpreter, under 10 MB) that spawns it and reports its rusage.
LAUNCHER = """
import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - t,
               "maxrss_kb": ru.ru_maxrss}, f)
"""


def run_child(cmd, timeout=None):
    """Runs cmd; returns (returncode, stdout, stderr, wall_s, maxrss_mb) for that child alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(suffix=".json") as rep:
        try:
            p = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, rep.name] + list(cmd),
                                 stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            return 127, "", str(e), 0.0, None
        timed_out = False
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, 9)
            p.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if timed_out:
            return 124, stdout, f"timed out after {timeout:.0f} s\n{stderr}", float(timeout), None
        try:
            with open(rep.name) as f:
                r = json.load(f)
        except (OSError, ValueError):   # could not be started (no such file, not executable, ...)
            return (p.returncode or 127), stdout, stderr or "could not start it", 0.0, None
        return r["rc"], stdout, stderr, r["wall_s"], r["maxrss_kb"] / 1024.0


def short_error(stderr: str, stdout: str = "", rc: int | None = None) -> str:
    lines = [l.strip() for l in (stderr or stdout).strip().splitlines() if l.strip()]
    # The first line says what failed; the last one says why (for tracebacks and wrapped errors).
    msg = (lines[0] if len(lines) == 1 else f"{lines[0]} | ... | {lines[-1]}" if len(lines) > 2 else
           " | ".join(lines)) if lines else "no output"
    if rc is not None:
        msg = f"exit {rc}: {msg}"
    return msg[:400]


def parse_json_object(stdout: str):
    """The bench subcommand prints one JSON object; tolerate other lines around it."""
    s = stdout.strip()
    try:
        obj = json.loads(s)
        if isinstance(obj, dict):
            return obj
    except json.JSONDecodeError:
        pass
    for line in reversed(s.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the output: " + s[:200])


SAMPLE_KEYS = ("samples_ms", "latencies_ms", "times_ms", "iterations_ms")


class OurBench:
    """One row for `convnext-convert bench MODEL ...` (a .cnx, or the .onnx reference executor)."""

    def __init__(self, binary, model, batch, threads, label, hw=(224, 224), force_size=False):
        self.binary, self.model, self.batch, self.threads, self.label = binary, model, batch, threads, label
        self.hw = hw
        self.force_size = force_size    # always pass --size (the backbone rows: dynamic H and W)
        self.rounds = []        # the parsed JSON of each round, with "_round" = its index
        self.maxrss_mb = None

    def cmd(self, iterations):
        size = ["--size", str(self.hw[0])] if self.hw[0] == self.hw[1] and (self.force_size or self.hw != (224, 224)) \
            else []
        return [self.binary, "bench", self.model, "--threads", str(self.threads), "--batch", str(self.batch),
                "--iterations", str(iterations), "--json"] + size

    def round(self, r, iterations, timeout):
        rc, out, err, wall, rss = run_child(self.cmd(iterations), timeout=timeout)
        if rc != 0:
            raise RuntimeError(short_error(err, out, rc))
        obj = parse_json_object(out)
        for k in ("median_ms", "p90_ms"):
            if not isinstance(obj.get(k), (int, float)):
                raise RuntimeError(f"the JSON has no number {k!r}: {json.dumps(obj)[:200]}")
        obj["_wall_s"] = wall
        obj["_maxrss_mb"] = rss
        obj["_round"] = r
        self.rounds.append(obj)
        self.maxrss_mb = max(self.maxrss_mb or 0.0, rss)
        return obj


# ---------------------------------------------------------------------------------------------
# Model facts and fixture data.
# ---------------------------------------------------------------------------------------------

def model_facts(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                   onnx.TensorProto.DOUBLE}
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type in float_types)
    init_names = {t.name for t in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in init_names)
    dims = []
    for d in inp.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    size = os.path.getsize(path)
    ext = set()
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                ext.add(kv.value)
    for loc in ext:
        p = os.path.join(os.path.dirname(path), loc)
        if os.path.exists(p):
            size += os.path.getsize(p)
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=None)
    return {"parameters": params, "input_name": inp.name, "input_dims": dims, "onnx_bytes": size,
            "opset": opset, "output_names": [o.name for o in m.graph.output], "producer": f"{m.producer_name} {m.producer_version}".strip()}


def fixture_rows(model_path, hw, seed=0):
    """(inputs, expected or None, (H, W)): the fixture's sample rows (input.npy, input2.npy, ...).

    hw: the model's fixed (H, W), or None when they are dynamic (then the first fixture's)."""
    d = os.path.dirname(model_path)
    xs, ys = [], []
    for suffix in ("", "2"):
        xp, yp = os.path.join(d, f"input{suffix}.npy"), os.path.join(d, f"expected{suffix}.npy")
        if os.path.exists(xp) and os.path.exists(yp):
            x, y = np.load(xp), np.load(yp)
            if hw is None and x.ndim == 4:
                hw = tuple(x.shape[2:])
            if x.ndim == 4 and tuple(x.shape[2:]) == tuple(hw) and x.shape[0] == y.shape[0]:
                xs.append(x.astype(np.float32))
                ys.append(y.astype(np.float32))
    hw = tuple(hw) if hw else (224, 224)
    if xs:
        return np.concatenate(xs), np.concatenate(ys), hw
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 3, hw[0], hw[1]), dtype=np.float32), None, hw


def tile_rows(a, batch):
    idx = [i % a.shape[0] for i in range(batch)]
    return np.ascontiguousarray(a[idx])


def compare(y, ref):
    if y is None or ref is None:
        return None
    if y.shape != ref.shape:
        return {"error": f"shape {list(y.shape)} != expected {list(ref.shape)}"}
    diff = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64))))
    scale = max(1.0, float(np.max(np.abs(ref))))
    top1 = float(np.mean(np.argmax(y, axis=-1) == np.argmax(ref, axis=-1))) if y.ndim == 2 else None
    return {"max_abs_diff": diff, "scale": scale, "top1_agreement": top1}


def judge(check, low_precision):
    """'ok', 'WRONG' or 'unverified'."""
    if not check:
        return "unverified"
    if "error" in check:
        return "WRONG"
    tol = (LOW_PRECISION_REL_TOL if low_precision else F32_REL_TOL) * check["scale"]
    return "ok" if check["max_abs_diff"] <= tol else "WRONG"


# ---------------------------------------------------------------------------------------------
# Statistics and report.
# ---------------------------------------------------------------------------------------------

def stats_from_samples(samples):
    a = np.asarray(samples, dtype=np.float64)
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "n": int(a.size)}


def round_samples(obj):
    for k in SAMPLE_KEYS:
        if isinstance(obj.get(k), list) and obj[k]:
            return [float(v) for v in obj[k]]
    return None


def stats_for_ours(row: OurBench, keep_rounds):
    rounds = [r for r in row.rounds if r["_round"] in keep_rounds] or row.rounds
    per_iteration = [round_samples(r) for r in rounds]
    if all(per_iteration):
        s = stats_from_samples([v for lst in per_iteration for v in lst])
        s["from"] = "per-iteration samples"
    else:
        med = [float(r["median_ms"]) for r in rounds]
        p90 = [float(r["p90_ms"]) for r in rounds]
        s = {"median_ms": float(np.median(med)), "p90_ms": float(np.median(p90)), "min_ms": None,
             "n": int(sum(int(r.get("iterations", 0) or 0) for r in rounds)) or len(med),
             "from": "median of per-round medians / p90s"}
    peaks = [r.get("peak_rss_mb") for r in row.rounds if isinstance(r.get("peak_rss_mb"), (int, float))]
    s["peak_rss_mb"] = max(peaks) if peaks else row.maxrss_mb
    tps = [r.get("throughput_ips") for r in rounds if isinstance(r.get("throughput_ips"), (int, float))]
    s["reported_throughput_ips"] = float(np.median(tps)) if tps else None
    return s


def fmt(v, spec=".1f", none="-"):
    return none if v is None else format(v, spec)


def print_table(title, rows, refs):
    """rows: list of dicts with label, median_ms, p90_ms, ips, rss, check, status."""
    ref_cols = [(k, lbl) for k, lbl in (("ort", "t/ORT"), ("ov_f32", "t/OVf32"), ("ov_auto", "t/OVbf16"))]
    head = (f"{'runtime':<44} {'median ms':>9} {'p90 ms':>8} {'img/s':>7} " +
            " ".join(f"{lbl:>8}" for _, lbl in ref_cols) + f" {'RSS MB':>7} {'max|diff|':>9}  check")
    print(title)
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("unavailable"):
            print(f"{r['label']:<44} not available: {r['unavailable']}")
            continue
        ratios = []
        for k, _ in ref_cols:
            ref = refs.get(k)
            ratios.append(f"{r['median_ms'] / ref:>8.2f}" if ref else f"{'-':>8}")
        check = r.get("check") or {}
        diff = check.get("max_abs_diff")
        print(f"{r['label']:<44} {r['median_ms']:>9.2f} {r['p90_ms']:>8.2f} {r['ips']:>7.1f} " +
              " ".join(ratios) + f" {fmt(r.get('rss_mb'), '.0f'):>7} {fmt(diff, '.2e'):>9}  {r['status']}")
    print()


# ---------------------------------------------------------------------------------------------
# The backbone rows: ConvNeXt-T features_only (four stage outputs) at 224 and 512, batch 1,
# against ONNX Runtime on the same export.
# ---------------------------------------------------------------------------------------------

def backbone_iterations(args, size):
    """Timed iterations per row per round: about the same time per turn at every size."""
    if args.backbone_iterations:
        return args.backbone_iterations
    scale = (224.0 / size) ** 2
    return max(2, math.ceil(6 * scale)) if args.quick else max(6, math.ceil(24 * scale))


def load_outputs(path):
    """An .npz (every output by name) as a dict of float32 arrays."""
    with np.load(path) as z:
        return {k: np.asarray(z[k], dtype=np.float32) for k in z.files}


def compare_outputs(ys, refs):
    """Max relative error per output: max|y - ref| / max|ref|; None when there is no reference."""
    if ys is None or refs is None:
        return None
    per = {}
    for name, ref in refs.items():
        if name not in ys:
            return {"error": f"no output {name!r} (has {sorted(ys)})"}
        y = ys[name]
        if y.shape != ref.shape:
            return {"error": f"{name}: shape {list(y.shape)} != expected {list(ref.shape)}"}
        scale = float(np.max(np.abs(ref)))
        diff = float(np.max(np.abs(y.astype(np.float64) - ref.astype(np.float64))))
        per[name] = diff / scale if scale > 0 else diff
    return {"rel_by_output": per, "max_rel": float(np.max(list(per.values())))}


def judge_outputs(check):
    if not check:
        return "unverified"
    if "error" in check:
        return "WRONG"
    return "ok" if check["max_rel"] < BACKBONE_REL_TOL else "WRONG"   # NaN is WRONG


def describe_check(check):
    if not check:
        return "no reference"
    if "error" in check:
        return check["error"]
    return "  ".join(f"{k} {v:.2e}" for k, v in check["rel_by_output"].items())


def print_backbone_table(title, rows, ort_ms):
    head = (f"{'runtime':<34} {'median ms':>9} {'p90 ms':>8} {'img/s':>7} {'t/ORT':>7} {'RSS MB':>7} "
            f"{'max rel err':>11}  check")
    print(title)
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("unavailable"):
            print(f"{r['label']:<34} not available: {r['unavailable']}")
            continue
        ratio = f"{r['median_ms'] / ort_ms:>7.2f}" if ort_ms else f"{'-':>7}"
        c = r.get("check") or {}
        print(f"{r['label']:<34} {r['median_ms']:>9.2f} {r['p90_ms']:>8.2f} {r['ips']:>7.2f} {ratio} "
              f"{fmt(r.get('rss_mb'), '.0f'):>7} {fmt(c.get('max_rel'), '.2e'):>11}  {r['status']}")
    print()


def backbone_section(args):
    """Returns (exit code, the results' "backbone" entry). Exit code 3 when a row is WRONG, 2 when
    there is no model."""
    t0 = time.perf_counter()
    model = os.path.abspath(args.backbone_model)
    sizes = [int(v) for v in str(args.backbone_sizes).split(",") if v.strip()]
    rounds = args.rounds if args.rounds else (2 if args.quick else 7)
    threads = args.threads
    res = {"model": model, "sizes": sizes, "batch": 1, "threads": threads,
           "iterations": {str(s): backbone_iterations(args, s) for s in sizes},
           "warmup": default_warmup(args, 1), "rel_tolerance": BACKBONE_REL_TOL,
           "rows": {}, "conversion": None, "failures": []}
    print(f"backbone: {model}")
    if not os.path.exists(model):
        msg = (f"no model at {model} (bash Benchmarks/setup_venv.sh --backbone makes the default one: "
               "Fixtures/make_backbone.py --full-size)")
        print(f"backbone rows not available: {msg}\n")
        res["unavailable"] = msg
        return 2, res
    facts = model_facts(model)
    res["model_facts"] = facts
    name = os.path.basename(os.path.dirname(model)) if os.path.basename(model) == "model.onnx" \
        else os.path.splitext(os.path.basename(model))[0]
    out_names = facts["output_names"]
    d = os.path.dirname(model)
    tmp = tempfile.mkdtemp(prefix="cnx-bench-backbone-")
    # Inputs and references: input_S.npy and expected_S_<output>.npy beside the model (ONNX Runtime's
    # outputs, made by make_backbone.py), else a random input and the ONNX Runtime row's outputs.
    inputs, refs, ref_source = {}, {}, {}
    for s in sizes:
        xp = os.path.join(d, f"input_{s}.npy")
        x = np.load(xp) if os.path.exists(xp) else None
        if x is not None and x.shape == (1, 3, s, s) and x.dtype == np.float32:
            inputs[s] = xp
            eps = {o: os.path.join(d, f"expected_{s}_{o}.npy") for o in out_names}
            if all(os.path.exists(p) for p in eps.values()):
                refs[s] = {o: np.load(p).astype(np.float32) for o, p in eps.items()}
                ref_source[s] = f"expected_{s}_<output>.npy beside the model"
        else:
            inputs[s] = os.path.join(tmp, f"input_{s}.npy")
            np.save(inputs[s], np.random.default_rng(s).standard_normal((1, 3, s, s), dtype=np.float32))
        if s not in refs:
            refs[s], ref_source[s] = None, "ONNX Runtime's outputs (no expected files beside the model)"
    print(f"input {sizes} square, batch 1, {threads} threads, {rounds} rounds, iterations per round "
          f"{ {s: backbone_iterations(args, s) for s in sizes} }, warmup {default_warmup(args, 1)}; "
          f"outputs {out_names}")
    print()

    # --- ONNX Runtime: one worker per size, checked on exactly the session that is timed ---------
    workers, unavailable, ort_label = {}, {}, "ONNX Runtime (f32)"
    for s in sizes:
        w = None
        try:
            w = Worker(ORT, model, 1, threads, (s, s), all_outputs=True)
            w.call(cmd="input", path=inputs[s])
            out = os.path.join(tmp, f"ort_{s}.npz")
            w.call(cmd="infer", out=out)
            ys = load_outputs(out)
            if refs[s] is None:
                refs[s] = ys
            w.check = compare_outputs(ys, refs[s])
            workers[s] = w
            ort_label = f"ONNX Runtime {w.info['version']} (f32)"
        except Exception as e:
            unavailable[s] = " ".join(str(e).split())[:400]
            if w is not None:
                w.close()

    # --- ours: convert once, check `run` on every size, probe `bench` ------------------------------
    ours, ours_unavailable, ours_checks, ours_run_errors = {}, {}, {}, {}
    our_label = "convnext-convert .cnx"
    binary = os.path.abspath(args.binary)
    cnx_path = os.path.join(args.results, f"{name}.cnx")
    if args.no_ours:
        ours_unavailable = {s: "skipped (--no-ours)" for s in sizes}
    elif not os.path.exists(binary):
        ours_unavailable = {s: f"no binary at {binary} (swift build -c release --product convnext-convert)" for s in sizes}
    else:
        if os.path.exists(cnx_path):
            os.remove(cnx_path)
        cmd = [binary, "convert", model, cnx_path]
        rc, out, err, wall, rss = run_child(cmd, timeout=args.timeout)
        conv = {"command": shlex.join(cmd), "ok": rc == 0 and os.path.exists(cnx_path), "wall_s": wall,
                "peak_rss_mb": rss}
        if conv["ok"]:
            size = os.path.getsize(cnx_path)
            conv.update({"cnx_bytes": size, "fp32_param_bytes": 4 * facts["parameters"],
                         "size_vs_4_bytes_per_param": size / (4 * facts["parameters"]) if facts["parameters"] else None})
        else:
            conv["error"] = short_error(err, out, rc)
            ours_unavailable = {s: f"convert failed: {conv['error']}" for s in sizes}
        res["conversion"] = conv
        for s in sizes if conv["ok"] else []:
            row = OurBench(binary, cnx_path, 1, threads, our_label, (s, s), force_size=True)
            y_out = os.path.join(tmp, f"ours_{s}.npz")
            rc, out, err, _, _ = run_child([binary, "run", cnx_path, "--input", inputs[s], "--output", y_out],
                                           timeout=args.timeout)
            if rc == 0 and os.path.exists(y_out):
                try:
                    ours_checks[s] = compare_outputs(load_outputs(y_out), refs[s])
                except Exception as e:   # not an .npz: one output only, or a broken file
                    ours_checks[s] = {"error": f"could not read {os.path.basename(y_out)}: {e}"[:400]}
            else:
                ours_checks[s] = None
                ours_run_errors[s] = short_error(err, out, rc)
            try:
                rc, out, err, _, _ = run_child(row.cmd(1), timeout=args.timeout)
                if rc != 0:
                    raise RuntimeError(short_error(err, out, rc))
                obj = parse_json_object(out)
                if isinstance(obj.get("input"), list) and list(obj["input"])[-2:] != [s, s]:
                    raise RuntimeError(f"bench ran on input {obj['input']}, not {s}x{s}")
                ours[s] = row
            except Exception as e:
                ours_unavailable[s] = " ".join(str(e).split())[:400]

    print(f"backbone verification (max |y - ref| / max |ref| per output, must be < {BACKBONE_REL_TOL:g}):")
    for s in sizes:
        print(f"  {s}x{s}: reference = {ref_source[s]}")
        if s in workers:
            c = workers[s].check
            print(f"    {ort_label:<32} {describe_check(c)}  {judge_outputs(c)}")
        else:
            print(f"    {ort_label:<32} not available: {unavailable.get(s)}")
        if s in ours_checks:
            c = ours_checks[s]
            if c is None:
                print(f"    {our_label:<32} not verified: `run` not available: {ours_run_errors.get(s, 'run failed')}")
            else:
                print(f"    {our_label:<32} {describe_check(c)}  {judge_outputs(c)}")
        elif s in ours_unavailable:
            print(f"    {our_label:<32} not available: {ours_unavailable[s]}")
    print()

    # --- the interleaved rounds (as for the classifier rows) --------------------------------------
    samples = {s: {} for s in workers}
    pids = [w.proc.pid for w in workers.values()]
    foreign_by_round = []
    max_rounds = rounds if (args.quick or args.no_extra_rounds) else 2 * rounds
    t_rounds = time.perf_counter()
    r = 0
    while workers or ours:
        if r >= rounds:
            n_quiet = sum(1 for sh in foreign_by_round if sh is None or sh <= NOISY_SHARE)
            if n_quiet >= rounds or r >= max_rounds or time.perf_counter() - t0 > args.budget:
                break
            if r == rounds:
                print(f"  {rounds - n_quiet} noisy rounds: running extra rounds (at most {max_rounds - rounds}, "
                      f"within a {args.budget:.0f} s budget) to get {rounds} quiet ones")
        t_r, busy0, own0 = time.perf_counter(), machine_busy_s(), own_cpu_s(pids)
        for s in sizes:
            entries = ([("w", s)] if s in workers else []) + ([("o", s)] if s in ours else [])
            k = r % len(entries) if entries else 0
            entries = entries[k:] + entries[:k]
            iters = backbone_iterations(args, s)
            for how, _ in entries:
                time.sleep(PAUSE_S)
                try:
                    if how == "w":
                        samples[s][r] = workers[s].call(cmd="time", warmup=default_warmup(args, 1),
                                                        iterations=iters)["samples_ms"]
                    else:
                        ours[s].round(r, iters, args.timeout)
                except Exception as e:
                    if how == "w":
                        unavailable[s] = f"failed in round {r + 1}: {' '.join(str(e).split())}"[:400]
                        workers.pop(s).close()
                    else:
                        ours_unavailable[s] = f"failed in round {r + 1}: {' '.join(str(e).split())}"[:400]
                        ours.pop(s)
        busy1, own1 = machine_busy_s(), own_cpu_s(pids)
        share = None
        if busy0 is not None and busy1 is not None:
            wall = max(1e-6, time.perf_counter() - t_r)
            share = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
        foreign_by_round.append(share)
        print(f"  backbone round {r + 1}/{rounds}{' (extra)' if r >= rounds else ''} done "
              f"({time.perf_counter() - t_rounds:.0f} s)"
              + ("" if share is None else f"; other processes used {100 * share:.0f}% of the CPU"
                 + ("  <- noisy" if share > NOISY_SHARE else "")), flush=True)
        r += 1
    planned, rounds = rounds, r
    quiet = [i for i, sh in enumerate(foreign_by_round) if sh is None or sh <= NOISY_SHARE]
    keep_rounds = set(quiet) if len(quiet) >= max(1, (planned + 1) // 2) else set(range(rounds))
    noisy = sorted(set(range(rounds)) - set(quiet))
    res.update({"rounds": rounds, "rounds_used": sorted(keep_rounds), "foreign_cpu_share_by_round": foreign_by_round,
                "loadavg_end": os.getloadavg(), "noisy": bool(noisy) and len(keep_rounds) == rounds})
    if noisy and len(keep_rounds) < rounds:
        print(f"  statistics from the {len(keep_rounds)} quiet rounds; dropped noisy rounds "
              f"{[i + 1 for i in noisy]} (other processes used > {100 * NOISY_SHARE:.0f}% of the CPU)")
    elif noisy:
        print(f"  NOISY RUN: other processes used > {100 * NOISY_SHARE:.0f}% of the CPU in "
              f"{len(noisy)} of {rounds} rounds, too many to drop: rerun on a quiet machine.")
    print()
    for w in workers.values():
        w.close()

    # --- report -----------------------------------------------------------------------------------
    exit_code = 0
    headline = []
    for s in sizes:
        rows, ort_ms = [], None
        if s in workers:
            w = workers[s]
            st = stats_from_samples([v for i in sorted(keep_rounds) for v in samples[s].get(i, [])]
                                    or [v for lst in samples[s].values() for v in lst])
            rows.append({"label": ort_label, "key": ORT, **st, "ips": 1000.0 / st["median_ms"], "rss_mb": w.maxrss_mb,
                         "check": w.check, "status": judge_outputs(w.check), "info": w.info})
            ort_ms = st["median_ms"]
        else:
            rows.append({"label": ort_label, "key": ORT, "unavailable": unavailable.get(s, "?")})
        if s in ours:
            st = stats_for_ours(ours[s], keep_rounds)
            c = ours_checks.get(s)
            rows.append({"label": our_label, "key": "cnx", **st, "ips": 1000.0 / st["median_ms"],
                         "rss_mb": st["peak_rss_mb"], "check": c, "status": judge_outputs(c),
                         "rounds_json": ours[s].rounds})
        elif s in ours_unavailable:
            rows.append({"label": our_label, "key": "cnx", "unavailable": ours_unavailable[s]})
        for row in rows:
            if row.get("status") == "WRONG":
                exit_code = 3
                res["failures"].append(f"backbone {s}x{s}: {row['label']} output is wrong "
                                       f"({describe_check(row['check'])})")
        used = f"{len(keep_rounds)} of {rounds}" if len(keep_rounds) < rounds else f"{rounds}"
        print_backbone_table(f"{name}, {s}x{s}, batch 1, {threads} threads ({used} interleaved rounds x "
                             f"{backbone_iterations(args, s)} iterations; t/ORT = median time / ONNX Runtime's; "
                             f"< 1.00 is faster)", rows, ort_ms)
        res["rows"][str(s)] = rows
        by_key = {row["key"]: row for row in rows if "median_ms" in row}
        if ORT in by_key and "cnx" in by_key:
            speed = by_key[ORT]["median_ms"] / by_key["cnx"]["median_ms"]
            res.setdefault("speed_vs_ort", {})[str(s)] = speed
            headline.append(f"{s}x{s} {speed:.2f}x")
    if headline:
        print("backbone: convnext-convert .cnx speed vs ONNX Runtime = " + ", ".join(headline) + "  (> 1.00: we are faster)")
    conv = res["conversion"]
    if conv and conv["ok"]:
        print(f"backbone conversion: {conv['wall_s']:.2f} s wall, peak RSS {conv['peak_rss_mb']:.0f} MB; "
              f".cnx {conv['cnx_bytes'] / 1e6:.1f} MB = {conv['size_vs_4_bytes_per_param']:.3f} x 4 bytes/parameter")
    elif conv:
        print(f"backbone conversion: not available: {conv['error']}")
    if res["noisy"]:
        print("NOISY RUN (backbone): other processes competed for the CPU in most rounds; these ratios are not reliable")
    res["total_s"] = time.perf_counter() - t0
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return exit_code, res


# ---------------------------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="ONNX model (default: the full-size ConvNeXt-T legacy opset-17 export). "
                         "input*.npy/expected*.npy beside it are used to verify; without them ORT is the reference")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 2)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="timed iterations per runtime per round (default max(4, ceil(24/batch)); --quick max(2, ceil(6/batch)))")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed iterations before each runtime's round (default 2 at batch 1, 1 above; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    ap.add_argument("--binary", default=DEFAULT_BINARY, help="the convnext-convert release binary")
    ap.add_argument("--no-ours", action="store_true", help="skip this project's rows (competitors only)")
    ap.add_argument("--no-bf16", action="store_true", help="skip this project's bfloat16 row (quantize --bf16)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the row for the reference executor (bench MODEL.onnx)")
    ap.add_argument("--results", default=DEFAULT_RESULTS, help="directory for latest.json and the .cnx")
    ap.add_argument("--budget", type=float, default=180.0,
                    help="seconds after which no extra round is started to replace noisy ones (default 180)")
    ap.add_argument("--no-extra-rounds", action="store_true",
                    help="do not add rounds when other processes made some of them noisy")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one invocation of our tool")
    ap.add_argument("--no-backbone", action="store_true",
                    help="skip the backbone rows (ConvNeXt-T features_only at 224 and 512, batch 1, against ONNX Runtime)")
    ap.add_argument("--backbone-only", action="store_true", help="run the backbone rows alone")
    ap.add_argument("--backbone-model", default=DEFAULT_BACKBONE,
                    help="the backbone export (default: Fixtures/large/convnext_tiny_features/model.onnx, made by "
                         "Fixtures/make_backbone.py --full-size); input_S.npy / expected_S_<output>.npy beside it "
                         "are used to verify, otherwise ONNX Runtime's outputs are the reference")
    ap.add_argument("--backbone-sizes", default="224,512", help="square input sizes of the backbone rows (default 224,512)")
    ap.add_argument("--backbone-iterations", type=int, default=None,
                    help="timed iterations per backbone row per round (default max(6, ceil(24 x (224/S)^2)): "
                         "24 at 224, 6 at 512; --quick max(2, ceil(6 x (224/S)^2)))")
    ap.add_argument("--hw", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--all-outputs", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=COMPETITORS, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def default_iterations(args, batch):
    if args.iterations:
        return args.iterations
    return max(2, math.ceil(6 / batch)) if args.quick else max(4, math.ceil(24 / batch))


def default_warmup(args, batch):
    if args.warmup is not None:
        return args.warmup
    return 1 if (args.quick or batch > 1) else 2


def machine_busy_s():
    """CPU seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def own_cpu_s(worker_pids):
    """CPU seconds of this process, its finished children (our tool's runs) and the live workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + sum(process_cpu_s(p) for p in worker_pids)


def git_state():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except OSError:
        return None


def cpu_facts():
    name, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if name and flags:
                    break
    except OSError:
        pass
    return {"model": name, "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "amx_bf16": "amx_bf16" in flags}


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        h, w = (int(v) for v in args.hw.split("x"))
        return worker_main(args.worker, args.model, int(args.batch), args.threads, (h, w), args.all_outputs)

    t_start = time.perf_counter()
    os.makedirs(args.results, exist_ok=True)
    if args.backbone_only:
        exit_code, result = 0, run_header()
        cpu = result["cpu"]
        print(f"cpu: {cpu['model']}, {cpu['cores']} cores, avx512_bf16={cpu['avx512_bf16']}; "
              f"env: {' '.join(f'{k}={v}' for k, v in sorted(result['env'].items())) or '-'}")
    else:
        exit_code, result = classifier_section(args, t_start)
        if result is None:
            return exit_code
    if args.no_backbone:
        result["backbone"] = {"skipped": "--no-backbone"}
    else:
        print()
        code, result["backbone"] = backbone_section(args)
        result["failures"] += result["backbone"].get("failures", [])
        if args.backbone_only and code == 2:
            return 2
        exit_code = max(exit_code, code)
    total = time.perf_counter() - t_start
    result["total_s"] = total
    print(f"total benchmark time: {total:.0f} s")
    out_json = os.path.join(args.results, "latest.json")
    tmp_json = out_json + ".tmp"
    with open(tmp_json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(tmp_json, out_json)
    print(f"results: {out_json}")
    for msg in result["failures"]:
        print(f"FAILED: {msg}", file=sys.stderr)
    return exit_code


def run_header():
    """The facts about the machine and the checkout that every results file records."""
    return {"cpu": cpu_facts(), "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
            "git": git_state(), "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "failures": []}


def classifier_section(args, t_start):
    """The classifier rows (ConvNeXt-T against ONNX Runtime and OpenVINO). Returns (exit code, result);
    result None when nothing could run."""
    rounds = args.rounds if args.rounds else (2 if args.quick else 7)
    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    model = os.path.abspath(args.model)
    if not os.path.exists(model):
        print(f"error: no model at {model} (bash Benchmarks/setup_venv.sh --model makes the default one)",
              file=sys.stderr)
        return 2, None
    facts = model_facts(model)
    dims = facts["input_dims"]
    fixed_hw = len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[2:4])
    if isinstance(dims[0], int) and dims[0] > 0:
        fixed = dims[0]
        dropped = [b for b in batches if b != fixed]
        if dropped:
            print(f"note: the model has a fixed batch of {fixed}; skipping batch {dropped}")
        batches = [fixed]
    xs_pool, ys_pool, hw = fixture_rows(model, tuple(dims[2:4]) if fixed_hw else None)
    model_name = os.path.basename(os.path.dirname(model)) if os.path.basename(model) == "model.onnx" \
        else os.path.splitext(os.path.basename(model))[0]
    cpu = cpu_facts()
    env_keep = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}

    print(f"model: {model} ({facts['producer']}, opset {facts['opset']}, input {dims}, "
          f"{facts['parameters']:,} parameters, {facts['onnx_bytes'] / 1e6:.1f} MB)")
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, avx512_bf16={cpu['avx512_bf16']}; "
          f"env: {' '.join(f'{k}={v}' for k, v in sorted(env_keep.items())) or '-'}")
    print(f"input {hw[0]}x{hw[1]}, batches {batches}, {args.threads} threads, {rounds} rounds, iterations per round "
          f"{ {b: default_iterations(args, b) for b in batches} }, "
          f"warmup { {b: default_warmup(args, b) for b in batches} }")
    print(f"verification reference: {'expected*.npy beside the model' if ys_pool is not None else 'ONNX Runtime (no expected.npy beside the model)'}")
    print()

    tmp = tempfile.mkdtemp(prefix="cnx-bench-")
    inputs, refs = {}, {}
    for b in batches:
        inputs[b] = os.path.join(tmp, f"input_b{b}.npy")
        np.save(inputs[b], tile_rows(xs_pool, b))
        refs[b] = tile_rows(ys_pool, b) if ys_pool is not None else None

    result = {"model": model, "model_facts": facts, "batches": batches, "threads": args.threads,
              "rounds": rounds, "cpu": cpu, "env": env_keep, "git": git_state(),
              "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "rows": {}, "conversion": None, "failures": []}

    # --- competitors: one worker per (runtime, batch); verify on exactly what is timed ---------
    labels = {ORT: "ONNX Runtime (f32)", OV_F32: "OpenVINO (f32 hint)", OV_AUTO: "OpenVINO (no hint)"}
    workers, unavailable = {}, {}
    for b in batches:
        for kind in COMPETITORS:
            key = (kind, b)
            w = None
            try:
                w = Worker(kind, model, b, args.threads, hw)
                w.call(cmd="input", path=inputs[b])
                out = os.path.join(tmp, f"{kind}_b{b}.npy")
                w.call(cmd="infer", out=out)
                y = np.load(out)
                if refs[b] is None and kind == ORT:
                    refs[b] = y   # no fixture: ONNX Runtime is the reference
                w.check = compare(y, refs[b])
                workers[key] = w
            except Exception as e:
                unavailable[key] = str(e)[:400]
                if w is not None:
                    w.close()
    # Labels with versions and the precision OpenVINO picked.
    for (kind, b), w in workers.items():
        if kind == ORT:
            labels[kind] = f"ONNX Runtime {w.info['version']} (f32)"
        elif kind == OV_F32:
            labels[kind] = f"OpenVINO {w.info['version'].split('-')[0]} (f32 hint)"
        else:
            labels[kind] = f"OpenVINO {w.info['version'].split('-')[0]} (no hint: {w.info['precision']})"

    # --- ours: convert, then check the bench and run subcommands ---------------------------------
    ours = {}             # (kind, batch) -> OurBench; kind "cnx" or "ref"
    ours_unavailable = {}
    ours_checks = {}
    ours_run_errors = {}
    cnx_path = os.path.join(args.results, f"{model_name}.cnx")
    binary = os.path.abspath(args.binary)
    if args.no_ours:
        for b in batches:
            ours_unavailable[("cnx", b)] = "skipped (--no-ours)"
    elif not os.path.exists(binary):
        for b in batches:
            ours_unavailable[("cnx", b)] = f"no binary at {binary} (swift build -c release --product convnext-convert)"
    else:
        if os.path.exists(cnx_path):
            os.remove(cnx_path)
        bf16_path = os.path.join(args.results, f"{model_name}.bf16.cnx")
        if not args.no_bf16:
            # bfloat16 weights, no calibration: the row beside OpenVINO's bf16 pick.
            if os.path.exists(bf16_path):
                os.remove(bf16_path)
            rc, out, err, wall, _ = run_child([binary, "quantize", "--bf16", model, bf16_path], timeout=args.timeout)
            ok = rc == 0 and os.path.exists(bf16_path)
            result["conversion_bf16"] = {"ok": ok, "wall_s": wall, "cnx_bytes": os.path.getsize(bf16_path) if ok else None,
                                         "error": None if ok else short_error(err, out, rc)}
            for b in batches:
                if not ok:
                    ours_unavailable[("bf16", b)] = f"quantize --bf16 failed: {result['conversion_bf16']['error']}"
        rc, out, err, wall, rss = run_child([binary, "convert", model, cnx_path], timeout=args.timeout)
        conv = {"command": shlex.join([binary, "convert", model, cnx_path]), "ok": rc == 0 and os.path.exists(cnx_path),
                "wall_s": wall, "peak_rss_mb": rss}
        if conv["ok"]:
            size = os.path.getsize(cnx_path)
            conv.update({"cnx_bytes": size, "fp32_param_bytes": 4 * facts["parameters"],
                         "size_vs_4_bytes_per_param": size / (4 * facts["parameters"]) if facts["parameters"] else None})
        else:
            conv["error"] = short_error(err, out, rc)
        result["conversion"] = conv

        candidates = []
        if conv["ok"]:
            candidates += [("cnx", b) for b in batches]
        if (result.get("conversion_bf16") or {}).get("ok"):
            candidates += [("bf16", b) for b in batches]
        else:
            for b in batches:
                ours_unavailable[("cnx", b)] = f"convert failed: {conv['error']}"
        if not args.no_reference:
            # The reference executor is slow (seconds per batch of 8, and its bench warms up 3
            # times): one row, at the smallest batch, is enough for scale.
            candidates += [("ref", min(batches))]
        for kind, b in candidates:
            path = {"cnx": cnx_path, "bf16": bf16_path}.get(kind, model)
            row = OurBench(binary, path, b, args.threads, OUR_LABELS[kind], hw)
            # Correctness first: `run` on the same input the competitors were checked on.
            y_out = os.path.join(tmp, f"ours_{kind}_b{b}.npy")
            rc, out, err, _, _ = run_child([binary, "run", path, "--input", inputs[b], "--output", y_out],
                                           timeout=args.timeout)
            if rc == 0 and os.path.exists(y_out):
                ours_checks[(kind, b)] = compare(np.load(y_out), refs[b])
            else:
                ours_checks[(kind, b)] = None
                ours_run_errors[(kind, b)] = short_error(err, out, rc)
            # Probe the bench subcommand once (also a warm-up for the page cache).
            try:
                rc, out, err, _, _ = run_child(row.cmd(1), timeout=args.timeout)
                if rc != 0:
                    raise RuntimeError(short_error(err, out, rc))
                parse_json_object(out)
                ours[(kind, b)] = row
            except Exception as e:
                ours_unavailable[(kind, b)] = str(e)[:400]

    # Announce verification.
    print("verification (output on the fixture inputs tiled to the batch, vs expected):")
    for b in batches:
        for kind in COMPETITORS:
            if (kind, b) in workers:
                c = workers[(kind, b)].check
                low = workers[(kind, b)].info["precision"] != "f32"
                st = judge(c, low)
                print(f"  batch {b:<3} {labels[kind]:<44} max|diff| {fmt(c and c.get('max_abs_diff'), '.3e')}"
                      f"  top-1 agree {fmt(c and c.get('top1_agreement'), '.2f')}  {st}")
            else:
                print(f"  batch {b:<3} {labels[kind]:<44} not available: {unavailable.get((kind, b))}")
        for kind in OUR_LABELS:
            key = (kind, b)
            if key not in ours and key not in ours_checks:
                continue
            c = ours_checks.get(key)
            lbl = OUR_LABELS[kind]
            if c is None:
                err = ours_run_errors.get(key, "run failed")
                print(f"  batch {b:<3} {lbl:<44} not verified: `run` not available: {err}")
            else:
                print(f"  batch {b:<3} {lbl:<44} max|diff| {fmt(c.get('max_abs_diff'), '.3e')}"
                      f"  top-1 agree {fmt(c.get('top1_agreement'), '.2f')}  {judge(c, kind == 'bf16')}")
    print()

    # --- the interleaved rounds -----------------------------------------------------------------
    samples = {key: {} for key in workers}     # key -> round -> per-iteration ms
    t_rounds = time.perf_counter()
    pids = [w.proc.pid for w in workers.values()]
    foreign_by_round = []
    max_rounds = rounds if (args.quick or args.no_extra_rounds) else 2 * rounds
    r = 0
    while True:
        if r >= rounds:
            n_quiet = sum(1 for sh in foreign_by_round if sh is None or sh <= NOISY_SHARE)
            if n_quiet >= rounds or r >= max_rounds or time.perf_counter() - t_start > args.budget:
                break
            if r == rounds:
                print(f"  {rounds - n_quiet} noisy rounds: running extra rounds (at most {max_rounds - rounds}, "
                      f"within a {args.budget:.0f} s budget) to get {rounds} quiet ones")
        t_r, busy0, own0 = time.perf_counter(), machine_busy_s(), own_cpu_s(pids)
        for b in batches:
            entries = [("w", key) for key in workers if key[1] == b] + [("o", key) for key in ours if key[1] == b]
            k = r % len(entries) if entries else 0
            entries = entries[k:] + entries[:k]      # rotate the order from round to round
            iters, warm = default_iterations(args, b), default_warmup(args, b)
            for how, key in entries:
                time.sleep(PAUSE_S)
                try:
                    if how == "w":
                        samples[key][r] = workers[key].call(cmd="time", warmup=warm, iterations=iters)["samples_ms"]
                    else:
                        # The reference executor is far slower: fewer iterations.
                        n = max(1, iters // 8) if key[0] == "ref" else iters
                        ours[key].round(r, n, args.timeout)
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
        foreign_by_round.append(share)
        print(f"  round {r + 1}/{rounds}{' (extra)' if r >= rounds else ''} done ({time.perf_counter() - t_rounds:.0f} s)"
              + ("" if share is None else f"; other processes used {100 * share:.0f}% of the CPU"
                 + ("  <- noisy" if share > NOISY_SHARE else "")), flush=True)
        r += 1
    planned, rounds = rounds, r
    # Other jobs on the machine (a build, a test suite) distort even the ratios: runtimes suffer
    # unequally when a core is taken away (ONNX Runtime's spinning thread pool far more than
    # OpenVINO). Keep only the quiet rounds when there are enough of them.
    quiet = [r for r, sh in enumerate(foreign_by_round) if sh is None or sh <= NOISY_SHARE]
    keep_rounds = set(quiet) if len(quiet) >= max(1, (planned + 1) // 2) else set(range(rounds))
    noisy = sorted(set(range(rounds)) - set(quiet))
    result["foreign_cpu_share_by_round"] = foreign_by_round
    result["rounds_used"] = sorted(keep_rounds)
    result["rounds"] = rounds
    result["loadavg_end"] = os.getloadavg()
    if noisy and len(keep_rounds) < rounds:
        print(f"  statistics from the {len(keep_rounds)} quiet rounds; dropped noisy rounds "
              f"{[r + 1 for r in noisy]} (other processes used > {100 * NOISY_SHARE:.0f}% of the CPU)")
    elif noisy:
        print(f"  NOISY RUN: other processes used > {100 * NOISY_SHARE:.0f}% of the CPU in "
              f"{len(noisy)} of {rounds} rounds, too many to drop. Even the ratios are distorted "
              "(runtimes suffer unequally from contention): rerun on a quiet machine.")
        result["noisy"] = True
    print()
    for w in workers.values():
        w.close()

    # --- report ---------------------------------------------------------------------------------
    exit_code = 0
    for b in batches:
        rows, table_refs = [], {}
        for kind in COMPETITORS:
            key = (kind, b)
            if key not in workers:
                rows.append({"label": labels[kind], "unavailable": unavailable.get(key, "?"), "key": kind})
                continue
            w = workers[key]
            s = stats_from_samples([v for r in sorted(keep_rounds) for v in samples[key].get(r, [])]
                                   or [v for lst in samples[key].values() for v in lst])
            status = judge(w.check, w.info["precision"] != "f32")
            rows.append({"label": labels[kind], "key": kind, **s, "ips": b * 1000.0 / s["median_ms"],
                         "rss_mb": w.maxrss_mb, "check": w.check, "status": status, "info": w.info})
            table_refs[kind] = s["median_ms"]
        for kind in OUR_LABELS:
            key = (kind, b)
            lbl = OUR_LABELS[kind]
            if key in ours:
                s = stats_for_ours(ours[key], keep_rounds)
                c = ours_checks.get(key)
                rows.append({"label": lbl, "key": kind, **s, "ips": b * 1000.0 / s["median_ms"],
                             "rss_mb": s["peak_rss_mb"], "check": c, "status": judge(c, kind == "bf16"),
                             "rounds_json": ours[key].rounds})
            elif key in ours_unavailable:
                rows.append({"label": lbl, "key": kind, "unavailable": ours_unavailable[key]})
        for row in rows:
            if row.get("status") == "WRONG" and (row["key"] in ("cnx", "ref") or
                                                  row.get("info", {}).get("precision") == "f32"):
                exit_code = 3
                result["failures"].append(f"batch {b}: {row['label']} output is wrong")
        n_it = default_iterations(args, b)
        used = f"{len(keep_rounds)} of {rounds}" if len(keep_rounds) < rounds else f"{rounds}"
        print_table(f"{model_name}, batch {b}, {args.threads} threads "
                    f"({used} interleaved rounds x {n_it} iterations; ratios are median time / the "
                    f"competitor's; < 1.00 is faster)", rows, table_refs)
        result["rows"][str(b)] = [{k: v for k, v in row.items()} for row in rows]

    # The headline: this project's .cnx against each competitor, per batch.
    for b in batches:
        rows = {r["key"]: r for r in result["rows"][str(b)] if "median_ms" in r}
        if "cnx" in rows:
            parts = [f"{rows[k]['median_ms'] / rows['cnx']['median_ms']:.2f}x {name}"
                     for k, name in ((ORT, "ONNX Runtime"), (OV_F32, "OpenVINO f32"), (OV_AUTO, "OpenVINO no-hint"))
                     if k in rows]
            print(f"batch {b}: convnext-convert .cnx speed = " + ", ".join(parts) + "  (> 1.00: we are faster)")
        if "bf16" in rows and OV_AUTO in rows:
            print(f"batch {b}: convnext-convert bf16 time / OpenVINO no-hint ({rows[OV_AUTO].get('info', {}).get('precision')}) = "
                  f"{rows['bf16']['median_ms'] / rows[OV_AUTO]['median_ms']:.2f}  (< 1.00: we are faster)")
        # How far each engine's reduced precision is from its own float32, on the same inputs.
        sq = {}
        for name, low, full in (("convnext-convert bf16", f"ours_bf16_b{b}.npy", f"ours_cnx_b{b}.npy"),
                                ("OpenVINO no-hint", f"{OV_AUTO}_b{b}.npy", f"{OV_F32}_b{b}.npy")):
            lp, fp = os.path.join(tmp, low), os.path.join(tmp, full)
            if os.path.exists(lp) and os.path.exists(fp):
                y, ref = np.load(lp).astype(np.float64), np.load(fp).astype(np.float64)
                noise = float(np.sum((y - ref) ** 2))
                sq[name] = {"sqnr_db": 10 * math.log10(float(np.sum(ref ** 2)) / noise) if noise > 0 else None,
                            "max_abs_diff": float(np.max(np.abs(y - ref)))}
        if sq:
            result.setdefault("reduced_precision_vs_own_f32", {})[str(b)] = sq
            print(f"batch {b}: reduced precision against the same engine's float32: " + "; ".join(
                f"{k} SQNR {fmt(v['sqnr_db'], '.1f')} dB, max|diff| {v['max_abs_diff']:.3g}" for k, v in sq.items()))
    conv = result["conversion"]
    if conv is None:
        print("conversion: not run (" + (ours_unavailable.get(("cnx", batches[0])) or "no binary") + ")")
    elif not conv["ok"]:
        print(f"conversion: not available: {conv['error']}")
    else:
        print(f"conversion: {conv['wall_s']:.2f} s wall, peak RSS {conv['peak_rss_mb']:.0f} MB; "
              f".cnx {conv['cnx_bytes'] / 1e6:.1f} MB = {conv['size_vs_4_bytes_per_param']:.3f} x "
              f"4 bytes/parameter ({conv['fp32_param_bytes'] / 1e6:.1f} MB for {facts['parameters']:,} parameters)")
    if result.get("noisy"):
        print("NOISY RUN: other processes competed for the CPU in most rounds; these ratios are not reliable")
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return exit_code, result


if __name__ == "__main__":
    sys.exit(main())
