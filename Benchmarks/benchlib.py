#!/usr/bin/env python3
"""The benchmarks' shared machinery (bench.py, bench_int8.py and families.py import it):

- competitor workers: one process per runtime, model file and batch size (ONNX Runtime, OpenVINO
  with or without a precision hint), driven by one JSON command per line; each reports what it
  runs on (the `isa` facts: ONNX Runtime's provider and the CPU features its MLAS kernels dispatch
  on, OpenVINO's inference precision and the primitive types of its execution graph);
- our tool as a subprocess (a tiny launcher gives its own peak RSS) and `bench --json` rows;
- checks, SQNR, statistics, and the interleaved rounds with the noise check (`run_rounds`).

Run as a script it is a worker (`--worker KIND ...`); the drivers start it so.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "convnext-convert")
DEFAULT_RESULTS = os.path.join(HERE, "results")

# Competitor worker kinds: the settings behind their reference measurements (Benchmarks/README.md).
# The model file decides float32 or int8 (a QDQ file).
ORT = "ort"          # ONNX Runtime, CPU provider, ORT_ENABLE_ALL
OV_F32 = "ov_f32"    # OpenVINO, INFERENCE_PRECISION_HINT=f32
OV_AUTO = "ov_auto"  # OpenVINO, no precision hint (bfloat16 on CPUs with AVX512-BF16)
WORKER_KINDS = (ORT, OV_F32, OV_AUTO)

# Float32 rows must match their reference to this tolerance, relative to max(1, max|ref|).
F32_REL_TOL = 1e-3
# A reduced-precision row (bf16, int8) below this SQNR (dB) against its engine's float32 is a
# broken model, not a rounding error; below LOW_SQNR_DB it is marked "low" (reported, not fatal).
BROKEN_SQNR_DB = 10.0
LOW_SQNR_DB = 20.0
# A short pause before each runtime's turn lets the previous runtime's spinning threads park.
PAUSE_S = 0.05
# A round in which other processes used more than this share of the machine's CPU is noisy.
NOISY_SHARE = 0.10
# OpenVINO layer types whose primitive types say which kernels did the arithmetic.
OV_COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution")


# ---------------------------------------------------------------------------------------------
# Worker: one competitor runtime at one batch size, in its own process.
# Protocol: one JSON command per line on stdin, one JSON reply per line on the original stdout.
# ---------------------------------------------------------------------------------------------

def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# The x86 features MLAS (ONNX Runtime's kernels) selects its float32 and int8 GEMMs by, best first.
MLAS_FEATURES = ("amx_int8", "amx_bf16", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "fma")


def ort_isa(sess, int8: bool):
    """ONNX Runtime does not say which MLAS kernels it picked; MLAS picks them by cpuid, so the
    CPU features it looks at are what can be reported."""
    flags = cpu_flags()
    have = [f for f in MLAS_FEATURES if f in flags]
    if int8:
        best = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx2") if f in flags), "sse")
    else:
        best = next((f for f in ("avx512f", "avx2") if f in flags), "sse")
    return {"provider": ",".join(p.replace("ExecutionProvider", "") for p in sess.get_providers()),
            "mlas_by_cpuid": best, "cpu_features": have,
            "short": f"{sess.get_providers()[0].replace('ExecutionProvider', '')} EP, MLAS {best} (by cpuid)"}


def ov_isa(compiled, precision):
    """The inference precision and the primitive types of the execution graph's compute layers."""
    prims, precisions = collections.Counter(), collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        if layer not in OV_COMPUTE_LAYERS:
            continue
        prims[rt["primitiveType"].astype(str) if "primitiveType" in rt else "?"] += 1
        precisions[rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"] += 1
    listed = ", ".join(f"{p} x{n}" for p, n in prims.most_common())
    return {"inference_precision": precision, "primitive_types": dict(prims.most_common()),
            "runtime_precisions": dict(precisions.most_common()),
            "short": f"{precision}: {listed}"}


def worker_main(kind: str, model: str, batch: int, threads: int, hw: tuple[int, int],
                all_outputs: bool = False, int8: bool = False) -> int:
    """int8: the model is a QDQ file (for the labels and the ISA facts)."""
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

            info = {"runtime": "onnxruntime", "version": ort.__version__,
                    "precision": "int8 (QDQ)" if int8 else "f32", "isa": ort_isa(sess, int8),
                    "settings": {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                                 "graph_optimization_level": "ORT_ENABLE_ALL",
                                 "providers": sess.get_providers()},
                    "outputs": out_names}
        elif kind in (OV_F32, OV_AUTO):
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

            shown = f"int8 (QDQ) + {precision}" if int8 else precision
            info = {"runtime": "openvino", "version": ov.get_version(), "precision": shown,
                    "float_precision": precision, "isa": ov_isa(compiled, shown),
                    "settings": {k: str(v) for k, v in config.items()}}
        else:
            raise ValueError(f"unknown worker kind {kind}")
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
            elif op == "infer_chunks":
                # Samples `batch` at a time, through exactly what is timed.
                data = np.ascontiguousarray(np.load(cmd["path"]), dtype=np.float32)
                outs = [np.array(infer(np.ascontiguousarray(data[i:i + batch])), dtype=np.float32, copy=True)
                        for i in range(0, data.shape[0], batch)]
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
    except Exception as e:  # reported to the parent, which marks the row unavailable
        reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


class Worker:
    """Parent side of a competitor worker process."""

    def __init__(self, kind, model, batch, threads, hw, all_outputs=False, int8=False):
        self.kind, self.batch, self.model = kind, batch, model
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--model", model,
               "--batch", str(batch), "--threads", str(threads), "--hw", f"{hw[0]}x{hw[1]}"]
        cmd += ["--all-outputs"] if all_outputs else []
        cmd += ["--int8"] if int8 else []
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)
        self.maxrss_mb = None
        self.check = None
        first = self._read()
        if not first.get("ok"):
            self.close()
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
    candidates = [s] + [line.strip() for line in reversed(s.splitlines()) if line.strip().startswith("{")]
    for text in candidates:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
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


def judge(check):
    """A float32 row: 'ok', 'WRONG' or 'unverified'."""
    if not check:
        return "unverified"
    if "error" in check:
        return "WRONG"
    return "ok" if check["max_abs_diff"] <= F32_REL_TOL * check["scale"] else "WRONG"


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


def run_header():
    """The facts about the machine and the checkout that every results file records."""
    return {"cpu": cpu_facts(), "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "CNX_"))},
            "git": git_state(), "python": platform.python_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "failures": []}



def sqnr_db(y, ref):
    """10 log10(sum ref^2 / sum (y - ref)^2) over every value; inf when they are equal."""
    y, ref = np.asarray(y, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    noise = float(np.sum((y - ref) ** 2))
    return float("inf") if noise == 0 else 10.0 * math.log10(float(np.sum(ref ** 2)) / noise)


def fmt_sqnr(s):
    return "-" if s is None else ("exact" if s == float("inf") else f"{s:.1f}")


def json_clean(v):
    """JSON without Infinity/NaN (an exact match has an infinite SQNR): those become strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(json_clean(obj), f, indent=1, default=str)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# Interleaved rounds with the noise check.
# ---------------------------------------------------------------------------------------------

def run_rounds(turns, planned, *, extra_max, deadline, pids, tag="round"):
    """Runs `planned` rounds of every turn, then extra rounds while fewer than `planned` were quiet.

    turns: list of (key, fn); fn(r) takes that row's turn in round r and raises when it fails (the
    row then leaves the rounds: failed[key] says why). The order rotates from round to round, so
    drift and other jobs hit every row alike. After each round the share of the machine's CPU used
    by *other* processes (/proc/stat minus our own CPU time and that of `pids`) is measured; a
    round above NOISY_SHARE is noisy. Extra rounds (at most extra_max, none started after the
    perf_counter time `deadline`) replace noisy ones. Returns rounds, rounds_used (the quiet ones
    when at least half the planned rounds were quiet, else all), per-round shares, noisy, failed."""
    turns, failed, foreign = list(turns), {}, []
    t0 = time.perf_counter()
    r = 0
    while turns:
        if r >= planned:
            n_quiet = sum(1 for sh in foreign if sh is None or sh <= NOISY_SHARE)
            if n_quiet >= planned or r >= planned + extra_max or time.perf_counter() > deadline:
                break
            if r == planned:
                print(f"  {planned - n_quiet} noisy {tag}s: running extra {tag}s (at most {extra_max}, none "
                      f"started after the time budget) to get {planned} quiet ones", flush=True)
        t_r, busy0, own0 = time.perf_counter(), machine_busy_s(), own_cpu_s(pids)
        k = r % len(turns)
        for key, fn in turns[k:] + turns[:k]:
            time.sleep(PAUSE_S)
            try:
                fn(r)
            except Exception as e:
                failed[key] = f"failed in {tag} {r + 1}: {' '.join(str(e).split())}"[:400]
        turns = [(key, fn) for key, fn in turns if key not in failed]
        busy1, own1 = machine_busy_s(), own_cpu_s(pids)
        share = None
        if busy0 is not None and busy1 is not None:
            wall = max(1e-6, time.perf_counter() - t_r)
            share = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
        foreign.append(share)
        print(f"  {tag} {r + 1}/{planned}{' (extra)' if r >= planned else ''} done ({time.perf_counter() - t0:.0f} s)"
              + ("" if share is None else f"; other processes used {100 * share:.0f}% of the CPU"
                 + ("  <- noisy" if share > NOISY_SHARE else "")), flush=True)
        r += 1
    quiet = [i for i, sh in enumerate(foreign) if sh is None or sh <= NOISY_SHARE]
    keep = set(quiet) if len(quiet) >= max(1, (planned + 1) // 2) else set(range(r))
    noisy = sorted(set(range(r)) - set(quiet))
    res = {"rounds": r, "rounds_planned": planned, "rounds_used": sorted(keep),
           "foreign_cpu_share_by_round": foreign, "noisy": bool(noisy) and len(keep) == r,
           "failed": failed, "loadavg_end": os.getloadavg()}
    if noisy and len(keep) < r:
        print(f"  statistics from the {len(keep)} quiet {tag}s; dropped noisy {tag}s {[i + 1 for i in noisy]} "
              f"(other processes used > {100 * NOISY_SHARE:.0f}% of the CPU)")
    elif noisy:
        print(f"  NOISY RUN: other processes used > {100 * NOISY_SHARE:.0f}% of the CPU in {len(noisy)} of {r} "
              f"{tag}s, too many to drop. Even the ratios are distorted (runtimes suffer unequally from "
              "contention): rerun on a quiet machine.")
    return res


def worker_samples(samples_by_round, keep):
    """A competitor's per-iteration times from the rounds kept (all rounds if none of those)."""
    return ([v for r in sorted(keep) for v in samples_by_round.get(r, [])]
            or [v for lst in samples_by_round.values() for v in lst])


def main(argv=None):
    ap = argparse.ArgumentParser(description="a benchmark worker (started by bench.py / families.py)")
    ap.add_argument("--worker", choices=WORKER_KINDS, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--hw", required=True)
    ap.add_argument("--all-outputs", action="store_true")
    ap.add_argument("--int8", action="store_true")
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.hw.split("x"))
    return worker_main(a.worker, a.model, a.batch, a.threads, (h, w), a.all_outputs, a.int8)


if __name__ == "__main__":
    sys.exit(main())
