#!/usr/bin/env python3
"""Speed benchmark: convnext-convert against ONNX Runtime and OpenVINO, side by side, in one run.

Run it through Benchmarks/run.sh (it sets up the venv, the models and the release build):

    bash Benchmarks/run.sh                       # ConvNeXt-T 224 and ConvNeXt-B 384, batch 1 and 8 (~10-15 min)
    bash Benchmarks/run.sh --quick               # a smoke run (~4 minutes; reuses quantized files)
    bash Benchmarks/run.sh --models t224         # one model
    bash Benchmarks/run.sh --backbone-only --quick

One table per model, rows per batch size: ONNX Runtime float32, OpenVINO float32 (hint) and
default (bfloat16 on this CPU), ours float32, bfloat16 and int8, ONNX Runtime static int8 (QDQ)
and OpenVINO on that QDQ model. Every reduced-precision row (bf16, int8) has its SQNR against its
own engine's float32 on the same held-out inputs; an ISA column says what each engine ran; a
"Done when (#12)" block closes each table.

Absolute times drift by 10 to 30% on shared machines, so every row of a batch size is measured in
the same run, interleaved round-robin (each round: every row, each with its own warm-up, in an
order that rotates from round to round), and the table reports ratios. Each competitor runs in its
own worker process (benchlib.py), which isolates thread pools and gives its peak RSS; ours runs as
`convnext-convert bench ... --json`, one process per round.

Before any timing, every row runs the held-out samples on exactly the session, compiled model or
file that is timed: float32 rows must match (ONNX Runtime's float32 against the fixture's
expected.npy, the others against ONNX Runtime), else the row is WRONG and the script exits with
status 3.

--backbone adds the backbone rows (--backbone-only runs them alone): ConvNeXt-T features_only
(Fixtures/make_backbone.py --full-size; outputs stage0..stage3) at 224x224 and 512x512, batch 1,
ONNX Runtime against `convnext-convert bench MODEL.cnx --size S`, verified per stage (max relative
error < 1e-4), interleaved and noise-checked the same way.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True     # no Benchmarks/__pycache__
import bench_int8 as I  # noqa: E402  (the data, the quantized files and their recipes)
from benchlib import (BROKEN_SQNR_DB, DEFAULT_BINARY, DEFAULT_RESULTS, LOW_SQNR_DB, ORT, OV_AUTO,  # noqa: E402
                      OV_F32, OurBench, Worker, compare, cpu_facts, fixture_rows, fmt, fmt_sqnr, judge,
                      model_facts, parse_json_object, run_child, run_header, run_rounds, short_error,
                      sqnr_db, stats_for_ours, stats_from_samples, tile_rows, worker_samples, write_json)

# The models: key -> (export, title). The exports are made by Benchmarks/setup_venv.sh --model.
MODELS = {
    "t224": (os.path.join(ROOT, "Fixtures", "large", "convnext_tiny_op17", "model.onnx"), "ConvNeXt-T 224x224"),
    "b384": (os.path.join(ROOT, "Fixtures", "large", "convnext_base_384", "model.onnx"), "ConvNeXt-B 384x384"),
}
DEFAULT_BACKBONE = os.path.join(ROOT, "Fixtures", "large", "convnext_tiny_features", "model.onnx")
# The backbone rows: every output (stage) of ours and ONNX Runtime's must agree with the reference
# to this relative error, max|y - ref| / max|ref| per output.
BACKBONE_REL_TOL = 1e-4
# The work of one image relative to ConvNeXt-T at 224 is about parameters x pixels (ConvNeXt-B at
# 384: 9.1); iterations per turn scale with its inverse, so each turn takes about as long.
T224_WORK = 28.6e6 * 224 * 224

# The rows, in table order: key -> (label, engine, worker kind or None for ours, precision).
ROWS = {
    "ort_f32": ("ONNX Runtime {v} f32", "ort", ORT, "f32"),
    "ov_f32": ("OpenVINO {v} f32 hint", "ov", OV_F32, "f32"),
    "ov_auto": ("OpenVINO {v} default ({p})", "ov", OV_AUTO, "bf16"),
    "ours_f32": ("convnext-convert f32", "ours", None, "f32"),
    "ours_bf16": ("convnext-convert bf16", "ours", None, "bf16"),
    "ours_int8": ("convnext-convert int8", "ours", None, "int8"),
    "ort_int8": ("ONNX Runtime {v} int8 (static QDQ)", "ort", ORT, "int8"),
    "ov_int8": ("OpenVINO {v} int8 QDQ (f32 hint)", "ov", OV_F32, "int8"),
}
# Each reduced-precision row's float32 on the same engine: its SQNR is measured against that.
OWN_F32 = {"ov_auto": "ov_f32", "ov_int8": "ov_f32", "ort_int8": "ort_f32", "ours_bf16": "ours_f32",
           "ours_int8": "ours_f32"}
RATIO_COLS = (("ort_f32", "t/ORT"), ("ov_f32", "t/OVf32"), ("ov_auto", "t/OVdef"))
# Issue #12's targets (Done when), at batch 1.
TARGET_BF16_VS_OV = 0.80
TARGET_INT8_VS_OV = 0.45
TARGET_F32_VS_ORT = 0.85


# ---------------------------------------------------------------------------------------------
# Settings.
# ---------------------------------------------------------------------------------------------

def model_work(facts, hw):
    return max(1e-3, facts["parameters"] * hw[0] * hw[1] / T224_WORK)


def default_iterations(args, batch, work=1.0):
    """Timed iterations per row per round: 24 images' worth of ConvNeXt-T 224 (--quick 6), at least
    4 at batch 1 and 2 above (--quick 2 and 1)."""
    if args.iterations:
        return args.iterations
    base, low = (6, 2 if batch == 1 else 1) if args.quick else (24, 4 if batch == 1 else 2)
    return max(low, round(base / (batch * work)))


def default_warmup(args, batch):
    if args.warmup is not None:
        return args.warmup
    return 1 if (args.quick or batch > 1) else 2


def our_isa(row_key, obj):
    """What our dispatcher picked, from bench's JSON (`isa`; older binaries: `kernels`)."""
    isa = obj.get("isa") if isinstance(obj, dict) else None
    if not isinstance(isa, dict):
        return (obj or {}).get("kernels") or "?"
    if row_key == "ours_bf16":
        return f"half {isa.get('half')} + float {isa.get('float')}"
    if row_key == "ours_int8":
        return f"int8 {isa.get('int8')} + float {isa.get('float')}"
    return f"float {isa.get('float')}"


# ---------------------------------------------------------------------------------------------
# One model: files, verification, rounds per batch, the table and the Done-when block.
# ---------------------------------------------------------------------------------------------

def model_section(args, key, model, title, t_start):
    """Returns (exit code, result entry)."""
    t0 = time.perf_counter()
    facts = model_facts(model)
    dims = facts["input_dims"]
    hw = tuple(dims[2:4]) if all(isinstance(d, int) and d > 0 for d in dims[2:4]) else (224, 224)
    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    if isinstance(dims[0], int) and dims[0] > 0:
        print(f"note: the model has a fixed batch of {dims[0]}; only that batch is measured")
        batches = [dims[0]]
    work = model_work(facts, hw)
    rounds = args.rounds if args.rounds else (2 if args.quick else 5)
    iters = {b: default_iterations(args, b, work) for b in batches}
    print(f"== {title}: {model}\n   ({facts['producer']}, opset {facts['opset']}, input {dims}, "
          f"{facts['parameters']:,} parameters, {facts['onnx_bytes'] / 1e6:.1f} MB; work {work:.1f}x ConvNeXt-T 224)")
    print(f"   batches {batches}, {args.threads} threads, {rounds} rounds, iterations per round {iters}, "
          f"warm-up { {b: default_warmup(args, b) for b in batches} }", flush=True)
    res = {"key": key, "title": title, "model": model, "model_facts": facts, "hw": list(hw), "batches": batches,
           "rounds_planned": rounds, "iterations": {str(b): n for b, n in iters.items()}, "rows": {},
           "failures": [], "batch": {}}
    work_dir = os.path.join(args.results, key)
    os.makedirs(work_dir, exist_ok=True)
    data = I.make_data(work_dir, hw)
    res["data"] = data
    binary = os.path.abspath(args.binary)
    no_ours = args.no_ours or not os.path.exists(binary)
    if not args.no_ours and no_ours:
        print(f"   no binary at {binary} (swift build -c release --product convnext-convert): our rows are skipped")
    files = I.prepare(model, work_dir, binary, data, reuse=args.reuse, timeout=args.timeout,
                      our_method=args.our_method, ours=not no_ours)
    res["files"] = {k: rec for k, (_, rec) in files.items()}
    held = data["held_out"]["path"]
    xs_pool, ys_pool, _ = fixture_rows(model, hw)
    exit_code = 0
    for b in batches:
        # Above batch 1, our rows also run at batch 1 in the same rounds, so the throughput
        # comparison (Done when) sets two figures from one time window side by side.
        paired = iters[1] if (1 in iters and b > 1) else None
        code, res["batch"][str(b)] = batch_section(args, model, hw, b, iters[b], rounds, files, held,
                                                   xs_pool, ys_pool, no_ours, t_start, paired_iterations=paired)
        exit_code = max(exit_code, code)
    res["done_when"] = report(res, batches)
    for b in batches:
        for row in res["batch"][str(b)]["rows"].values():
            if row.get("status") == "WRONG":
                exit_code = 3
                res["failures"].append(f"{title}, batch {b}: {row['label']} output is wrong ({row.get('check')})")
    res["total_s"] = time.perf_counter() - t0
    return exit_code, res


def batch_section(args, model, hw, b, n_iter, rounds, files, held, xs_pool, ys_pool, no_ours, t_start,
                  paired_iterations=None):
    """Every row at batch b: check, interleaved rounds, statistics. Returns (exit code, entry).
    paired_iterations: our rows also run at batch 1 (that many iterations) in every round, back to
    back with their batch-b run (row["paired_batch1"])."""
    print(f"\n-- batch {b}: workers and checks (every row on the {I.HELD_SAMPLES} held-out samples, "
          f"{b} at a time, on exactly what it times)", flush=True)
    tmp = tempfile.mkdtemp(prefix="cnx-bench-")
    paths = {"ort_f32": model, "ov_f32": model, "ov_auto": model,
             "ort_int8": files["ort_int8"][0] if files["ort_int8"][1].get("ok") else None}
    paths["ov_int8"] = paths["ort_int8"]
    for k in ("ours_f32", "ours_bf16", "ours_int8"):
        if k in files and files[k][1].get("ok"):
            paths[k] = files[k][0]
    rows = {k: {"key": k, "label": ROWS[k][0].format(v="", p="?").replace("  ", " "), "engine": ROWS[k][1],
                "precision": ROWS[k][3]} for k in ROWS}
    outputs, workers, ours = {}, {}, {}
    timed_input = os.path.join(tmp, "timed_input.npy")   # the first b held-out samples (tiled past 8)
    np.save(timed_input, tile_rows(np.load(held), b))
    for k, (label, engine, kind, precision) in ROWS.items():
        row = rows[k]
        if engine == "ours" and no_ours:
            row["unavailable"] = "skipped (--no-ours)" if args.no_ours else "no binary"
            continue
        if paths.get(k) is None:
            row["unavailable"] = (files.get(k) or files["ort_int8"])[1].get("error", "no file") if engine == "ours" \
                else "no QDQ model (ONNX Runtime's quantization failed)"
            continue
        out = os.path.join(tmp, f"{k}.npy")
        try:
            if engine == "ours":
                outputs[k] = run_ours_chunks(args, paths[k], held, b, tmp, k)
                ours[k] = OurBench(os.path.abspath(args.binary), paths[k], b, args.threads, label, hw)
            else:
                w = Worker(kind, paths[k], b, args.threads, hw, int8=precision == "int8")
                workers[k] = w
                w.call(cmd="infer_chunks", path=held, out=out)
                outputs[k] = np.load(out)
                row["info"] = w.info
                ver = w.info["version"].split("-")[0]
                row["label"] = label.format(v=ver, p=w.info.get("float_precision", w.info["precision"]))
                row["isa"] = w.info["isa"]["short"]
                row["isa_facts"] = w.info["isa"]
                if k == "ort_f32" and ys_pool is not None:
                    # ONNX Runtime on this machine against the fixture's expected outputs.
                    np.save(os.path.join(tmp, "fixture.npy"), tile_rows(xs_pool, b))
                    w.call(cmd="input", path=os.path.join(tmp, "fixture.npy"))
                    w.call(cmd="infer", out=out)
                    row["fixture_check"] = compare(np.load(out), tile_rows(ys_pool, b))
                w.call(cmd="input", path=timed_input)
        except Exception as e:
            row["unavailable"] = " ".join(str(e).split())[:400]
            if k in workers:
                workers.pop(k).close()
            ours.pop(k, None)
            outputs.pop(k, None)
    check_rows(rows, outputs)
    for k, row in rows.items():
        if row.get("unavailable"):
            print(f"   {row['label']:<40} not available: {row['unavailable']}")
        elif "check" in row:
            c = row["check"]
            vs = "ONNX Runtime f32" if row["precision"] == "f32" else f"its own f32 ({rows[OWN_F32[k]]['label']})"
            fig = (f"max|diff| {c['max_abs_diff']:.2e}" if row["precision"] == "f32" else
                   f"SQNR {fmt_sqnr(c.get('sqnr_db'))} dB") if "max_abs_diff" in c else c.get("error", "")
            print(f"   {row['label']:<40} vs {vs}: {fig}, top-1 agreement {fmt(c.get('top1_agreement'), '.3f')}  "
                  f"{row['status']}")
    fx = rows["ort_f32"].get("fixture_check")
    if fx:
        st = judge(fx)
        print(f"   {rows['ort_f32']['label']:<40} vs the fixture's expected.npy: max|diff| {fx['max_abs_diff']:.2e}  {st}")
        if st == "WRONG":
            rows["ort_f32"]["status"] = "WRONG"

    # --- interleaved rounds -------------------------------------------------------------------
    samples = {k: {} for k in workers}
    warm = default_warmup(args, b)

    def worker_turn(k):
        def turn(r):
            samples[k][r] = workers[k].call(cmd="time", warmup=warm, iterations=n_iter)["samples_ms"]
        return turn

    def our_turn(k):
        return lambda r: ours[k].round(r, n_iter, args.timeout)

    paired, paired_failed = {}, {}
    if paired_iterations:
        for k in ours:
            if rows[k].get("status") != "WRONG":
                paired[k] = OurBench(os.path.abspath(args.binary), paths[k], 1, args.threads, rows[k]["label"], hw)

    def paired_turn(k):
        # Our row at batch b and the same file at batch 1 back to back (which goes first
        # alternates by round): the throughput line compares the two, and on this kind of host
        # the speed drifts within a round, so turns minutes apart differ by more than the
        # batch does. A failure at batch 1 only drops the batch-1 figure.
        def turn(r):
            def one():
                if k in paired_failed:
                    return
                try:
                    paired[k].round(r, paired_iterations, args.timeout)
                except Exception as e:
                    paired_failed[k] = f"batch 1 failed in round {r + 1}: {' '.join(str(e).split())}"[:400]
            if r % 2:
                one()
            our_turn(k)(r)
            if not r % 2:
                one()
        return turn

    turns = [(k, worker_turn(k) if k in workers else (paired_turn(k) if k in paired else our_turn(k))) for k in ROWS
             if (k in workers or k in ours) and rows[k].get("status") != "WRONG"]
    print(f"-- batch {b}: {len(turns)} rows, {rounds} interleaved rounds x {n_iter} iterations", flush=True)
    extra = 0 if (args.quick or args.no_extra_rounds) else (rounds + 1) // 2
    rr = run_rounds(turns, rounds, extra_max=extra, deadline=t_start + args.budget,
                    pids=[w.proc.pid for w in workers.values()])
    for w in workers.values():
        w.close()
    keep = set(rr["rounds_used"])
    for k, row in rows.items():
        if k in rr["failed"]:
            row["unavailable"] = rr["failed"][k]
            continue
        if k in workers:
            s = stats_from_samples(worker_samples(samples[k], keep))
            row.update(s, rss_mb=workers[k].maxrss_mb)
            row["round_medians"] = {str(r): float(np.median(v)) for r, v in samples[k].items() if r in keep and v}
        elif k in ours:
            s = stats_for_ours(ours[k], keep)
            row.update(s, rss_mb=s["peak_rss_mb"], rounds_json=ours[k].rounds)
            row["round_medians"] = round_medians(ours[k], keep)
            row["isa"] = our_isa(k, ours[k].rounds[-1] if ours[k].rounds else {})
            row["isa_facts"] = (ours[k].rounds[-1] if ours[k].rounds else {}).get("isa")
        else:
            continue
        row["ips"] = b * 1000.0 / row["median_ms"]
        if k in paired_failed:
            row["paired_batch1_unavailable"] = paired_failed[k]
        elif k in paired and paired[k].rounds:
            p1 = stats_for_ours(paired[k], keep)
            row["paired_batch1"] = {"median_ms": p1["median_ms"], "ips": 1000.0 / p1["median_ms"],
                                    "iterations": paired_iterations, "round_medians": round_medians(paired[k], keep)}
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    return 0, {"rows": rows, "iterations": n_iter, **{k: rr[k] for k in rr if k != "failed"}}


def round_medians(ours, keep):
    """Our row's median by round (the rounds kept), keyed as the competitors' rows are."""
    return {str(o["_round"]): float(o["median_ms"]) for o in ours.rounds if o["_round"] in keep}


def run_ours_chunks(args, path, held, b, tmp, key):
    """`convnext-convert run` on the held-out samples, b at a time (the batch that is timed)."""
    x = np.load(held)
    outs = []
    for i in range(0, x.shape[0], b):
        xin, yout = os.path.join(tmp, f"{key}_in.npy"), os.path.join(tmp, f"{key}_out.npy")
        np.save(xin, np.ascontiguousarray(x[i:i + b]))
        rc, out, err, _, _ = run_child([os.path.abspath(args.binary), "run", path, "--input", xin, "--output", yout,
                                        "--threads", str(args.threads)], timeout=args.timeout)
        if rc != 0 or not os.path.exists(yout):
            raise RuntimeError(f"`run` failed: {short_error(err, out, rc)}")
        outs.append(np.load(yout))
        os.remove(yout)
    return np.concatenate(outs)


def check_rows(rows, outputs):
    """float32 rows against ONNX Runtime float32 (F32 tolerance); bf16 and int8 rows against their
    own engine's float32: SQNR (WRONG below BROKEN_SQNR_DB, low below LOW_SQNR_DB), top-1."""
    ref = outputs.get("ort_f32")
    for k, row in rows.items():
        if k not in outputs:
            continue
        y = outputs[k]
        if row["precision"] == "f32":
            c = compare(y, ref)
            row["check"], row["status"] = c or {}, judge(c)
            if c and "max_abs_diff" in c:
                c["sqnr_db_vs_ort_f32"] = sqnr_db(y, ref)
            continue
        own = outputs.get(OWN_F32[k])
        c = compare(y, own)
        if c is None:
            row["check"], row["status"] = {}, "unverified"
            continue
        row["check"] = c
        if "error" in c:
            row["status"] = "WRONG"
            continue
        c["sqnr_db"] = s = sqnr_db(y, own)
        if ref is not None and y.shape == ref.shape:
            c["sqnr_db_vs_ort_f32"] = sqnr_db(y, ref)
        row["status"] = "WRONG" if s < BROKEN_SQNR_DB else ("low" if s < LOW_SQNR_DB else "ok")


# ---------------------------------------------------------------------------------------------
# The table and the Done-when block.
# ---------------------------------------------------------------------------------------------

def report(res, batches):
    head = (f"{'batch':>5} {'runtime':<40} {'median':>8} {'p90':>8} {'img/s':>7} " +
            " ".join(f"{lbl:>7}" for _, lbl in RATIO_COLS) + f" {'RSS MB':>6} {'SQNR dB':>7} {'top-1':>5} "
            f"{'check':<6} ISA")
    used = "; ".join(f"batch {b}: {len(res['batch'][str(b)]['rounds_used'])} of {res['batch'][str(b)]['rounds']} "
                     f"rounds x {res['batch'][str(b)]['iterations']} iterations" for b in batches)
    print(f"\n{res['title']} ({used}; median/p90 in ms; t/X = median / X's median, < 1.00 is faster; "
          f"SQNR and top-1 agreement of bf16/int8 rows against the same engine's float32 on "
          f"{I.HELD_SAMPLES} held-out samples)")
    print(head)
    print("-" * len(head))
    for b in batches:
        rows = res["batch"][str(b)]["rows"]
        refs = {k: rows[k].get("median_ms") for k, _ in RATIO_COLS}
        for k, r in rows.items():
            if r.get("unavailable"):
                print(f"{b:>5} {r['label']:<40} not available: {r['unavailable']}")
                continue
            if "median_ms" not in r:
                continue
            ratios = " ".join(f"{r['median_ms'] / refs[c]:>7.2f}" if refs.get(c) else f"{'-':>7}" for c, _ in RATIO_COLS)
            c = r.get("check") or {}
            sq = fmt_sqnr(c.get("sqnr_db")) if r["precision"] != "f32" else "-"
            print(f"{b:>5} {r['label']:<40} {r['median_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['ips']:>7.1f} {ratios} "
                  f"{fmt(r.get('rss_mb'), '.0f'):>6} {sq:>7} {fmt(c.get('top1_agreement'), '.2f'):>5} "
                  f"{r.get('status', '?'):<6} {r.get('isa', '-')}")
        if res["batch"][str(b)].get("noisy"):
            print(f"{b:>5} NOISY: other processes competed for the CPU in most rounds of this batch")
    return done_when(res, batches)


def done_when(res, batches):
    """Issue #12's targets, each PASS or FAIL with its figures (batch 1; throughput: batch 8 vs 1)."""
    lines, out = [], {}

    def row(b, k):
        r = res["batch"].get(str(b), {}).get("rows", {}).get(k, {})
        return r if "median_ms" in r else None

    def line(name, ok, text):
        out[name] = {"pass": ok, "text": text}
        lines.append(f"  {'PASS' if ok else ('FAIL' if ok is False else 'N/A ')}  {text}")

    def per_round(r, ref, target):
        # The same ratio within each round (both rows timed minutes apart at most, not a whole run
        # apart): how far this host's drift moves the run's figure.
        a, b = r.get("round_medians") or {}, ref.get("round_medians") or {}
        ratios = sorted(a[k] / b[k] for k in a if k in b and b[k] > 0)
        if len(ratios) < 2:
            return ""
        best = ""
        if r.get("min_ms") and ref.get("min_ms"):
            # The best iterations: what each engine costs when the host leaves it alone (on a
            # shared host the medians also measure the neighbours). Information only.
            best = f"; best iterations {r['min_ms']:.1f}/{ref['min_ms']:.1f} ms = {r['min_ms'] / ref['min_ms']:.2f}"
        return (f"; round by round {ratios[0]:.2f}-{ratios[-1]:.2f}, median {float(np.median(ratios)):.2f}, "
                f"{sum(t <= target for t in ratios)} of {len(ratios)} rounds within{best}")

    b1 = 1 if 1 in batches else batches[0]
    ov, ort = row(b1, "ov_auto"), row(b1, "ort_f32")
    for k, name, target in (("ours_bf16", "bf16", TARGET_BF16_VS_OV), ("ours_int8", "int8", TARGET_INT8_VS_OV)):
        r = row(b1, k)
        if r and ov:
            t = r["median_ms"] / ov["median_ms"]
            line(f"{name}_vs_ov_default", t <= target, f"{name} {r['median_ms']:.2f} ms / OpenVINO default "
                 f"{ov['median_ms']:.2f} ms = {t:.2f} (target <= {target:.2f}), batch {b1}{per_round(r, ov, target)}")
        else:
            line(f"{name}_vs_ov_default", None, f"{name} vs OpenVINO default: not measured")
    ours_bf, ov_bf = row(b1, "ours_bf16"), row(b1, "ov_auto")
    s_ours = (ours_bf or {}).get("check", {}).get("sqnr_db")
    s_ov = (ov_bf or {}).get("check", {}).get("sqnr_db")
    if s_ours is not None and s_ov is not None:
        line("bf16_sqnr", s_ours >= s_ov, f"bf16 SQNR {fmt_sqnr(s_ours)} dB >= OpenVINO default's {fmt_sqnr(s_ov)} dB "
             f"(each against its own float32, batch {b1})")
    else:
        line("bf16_sqnr", None, "bf16 SQNR against OpenVINO's: not measured")
    r = row(b1, "ours_f32")
    if r and ort:
        t = r["median_ms"] / ort["median_ms"]
        line("f32_vs_ort", t <= TARGET_F32_VS_ORT, f"f32 {r['median_ms']:.2f} ms / ONNX Runtime f32 {ort['median_ms']:.2f} "
             f"ms = {t:.2f} (target <= {TARGET_F32_VS_ORT:.2f}), batch {b1}{per_round(r, ort, TARGET_F32_VS_ORT)}")
    else:
        line("f32_vs_ort", None, "f32 vs ONNX Runtime: not measured")
    bmax = max(batches)

    def ips(v):
        # Three significant figures: ConvNeXt-B 384's 2.27 and 2.34 images/s must not both print as 2.3.
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    for k, name in (("ours_f32", "f32"), ("ours_bf16", "bf16"), ("ours_int8", "int8")):
        lo, hi = row(b1, k), row(bmax, k)
        if hi and hi.get("paired_batch1") and bmax != 1:
            # Batch 1 from the same rounds as batch bmax: this host's speed drifts between sections.
            p1 = hi["paired_batch1"]["ips"]
            table = f"; the batch-1 section's {ips(lo['ips'])}" if lo else ""
            # The throughput ratio within each round (the two turns back to back): how much of the
            # run's ratio is the host's drift. Information only: the line is decided by the medians.
            a, c = hi.get("round_medians") or {}, hi["paired_batch1"].get("round_medians") or {}
            rounds = sorted((bmax / a[r]) / (1.0 / c[r]) for r in a if r in c and a[r] > 0 and c[r] > 0)
            spread = (f"; round by round {rounds[0]:.3f}-{rounds[-1]:.3f}, {sum(v >= 1 for v in rounds)} of "
                      f"{len(rounds)} rounds at least 1" if len(rounds) >= 2 else "")
            line(f"{name}_batch_throughput", hi["ips"] >= p1, f"{name} batch {bmax} {ips(hi['ips'])} img/s >= "
                 f"batch 1 {ips(p1)} img/s (ratio {hi['ips'] / p1:.3f}; batch 1 run in the same rounds{table}{spread})")
        elif lo and hi and bmax != b1:
            line(f"{name}_batch_throughput", hi["ips"] >= lo["ips"], f"{name} batch {bmax} {ips(hi['ips'])} img/s >= "
                 f"batch {b1} {ips(lo['ips'])} img/s (ratio {hi['ips'] / lo['ips']:.3f})")
        else:
            line(f"{name}_batch_throughput", None, f"{name} batch {bmax} vs batch {b1} throughput: not measured")
    i8 = row(b1, "ours_int8")
    if i8 and i8.get("check", {}).get("sqnr_db") is not None:
        others = "; ".join(f"{row(b1, k)['label']} {fmt_sqnr(row(b1, k)['check'].get('sqnr_db'))} dB"
                           for k in ("ort_int8", "ov_int8") if row(b1, k) and row(b1, k).get("check"))
        lines.append(f"  info  int8 SQNR {fmt_sqnr(i8['check']['sqnr_db'])} dB against our float32 ({others})")
    # Each engine's median round by round: OpenVINO's default has run in two modes on one host
    # (ConvNeXt-B 384: about 255 ms in some rounds, 280-300 in others, in one worker process), and
    # which one most rounds drew decides the run's ratio. Information only.
    by_round = [row(b1, k) for k in ("ours_bf16", "ours_int8", "ov_auto")]
    if all(r and r.get("round_medians") for r in by_round):
        text = "; ".join(f"{r['label']} " + " ".join(f"{v:.1f}" for _, v in sorted(r["round_medians"].items(),
                                                                                     key=lambda kv: int(kv[0])))
                         for r in by_round)
        lines.append(f"  info  medians round by round, ms: {text}")
    noisy = any(res["batch"][str(b)].get("noisy") for b in batches)
    print(f"\nDone when (#12), {res['title']}{' -- NOISY RUN, rerun quietly' if noisy else ''}:")
    print("\n".join(lines))
    print()
    return out
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

    def worker_turn(s):
        def turn(r):
            samples[s][r] = workers[s].call(cmd="time", warmup=default_warmup(args, 1),
                                            iterations=backbone_iterations(args, s))["samples_ms"]
        return turn

    def our_turn(s):
        return lambda r: ours[s].round(r, backbone_iterations(args, s), args.timeout)

    turns = []
    for s in sizes:
        turns += [(("w", s), worker_turn(s))] if s in workers else []
        turns += [(("o", s), our_turn(s))] if s in ours else []
    planned = args.rounds if args.rounds else rounds
    rr = run_rounds(turns, planned, extra_max=0 if (args.quick or args.no_extra_rounds) else planned,
                    deadline=t0 + args.budget, pids=[w.proc.pid for w in workers.values()], tag="backbone round")
    for (how, s), msg in rr["failed"].items():
        if how == "w":
            unavailable[s] = msg
            workers.pop(s).close()
        else:
            ours_unavailable[s] = msg
            ours.pop(s)
    keep_rounds, rounds = set(rr["rounds_used"]), rr["rounds"]
    res.update({k: rr[k] for k in ("rounds", "rounds_used", "foreign_cpu_share_by_round", "loadavg_end", "noisy")})
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
            st = stats_from_samples(worker_samples(samples[s], keep_rounds))
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
    ap.add_argument("--models", default="t224,b384",
                    help="comma-separated: t224 (ConvNeXt-T 224), b384 (ConvNeXt-B 384), or paths of other ONNX "
                         "exports (NCHW float32 input; input*.npy/expected*.npy beside them are used to verify)")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per batch (default 5; --quick 2)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="timed iterations per row per round, for every model and batch (default: 24 images of "
                         "ConvNeXt-T 224's work, at least 4 at batch 1 and 2 above; --quick 6, 2 and 1)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed iterations before each competitor's turn (default 2 at batch 1, 1 above; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run: 2 short rounds; implies --reuse")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the quantized and converted files of an earlier run when their recipe (model, data, "
                         "settings, binary) matches; their recorded times are then shown, marked reused")
    ap.add_argument("--our-method", default=None, help="--method for our quantize --int8 (default: the tool's own)")
    ap.add_argument("--binary", default=DEFAULT_BINARY, help="the convnext-convert release binary")
    ap.add_argument("--no-ours", action="store_true", help="skip this project's rows (competitors only)")
    ap.add_argument("--results", default=DEFAULT_RESULTS, help="directory for latest.json and the model files")
    ap.add_argument("--budget", type=float, default=780.0,
                    help="seconds from the start after which no extra round (to replace noisy ones) starts "
                         "(default 780)")
    ap.add_argument("--no-extra-rounds", action="store_true",
                    help="do not add rounds when other processes made some of them noisy")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for one invocation of a tool")
    ap.add_argument("--backbone", action="store_true",
                    help="also the backbone rows (ConvNeXt-T features_only at 224 and 512, batch 1, against ONNX Runtime)")
    ap.add_argument("--backbone-only", action="store_true", help="run the backbone rows alone")
    ap.add_argument("--backbone-model", default=DEFAULT_BACKBONE,
                    help="the backbone export (default: Fixtures/large/convnext_tiny_features/model.onnx, made by "
                         "Fixtures/make_backbone.py --full-size); input_S.npy / expected_S_<output>.npy beside it "
                         "are used to verify, otherwise ONNX Runtime's outputs are the reference")
    ap.add_argument("--backbone-sizes", default="224,512", help="square input sizes of the backbone rows (default 224,512)")
    ap.add_argument("--backbone-iterations", type=int, default=None,
                    help="timed iterations per backbone row per round (default max(6, ceil(24 x (224/S)^2)): "
                         "24 at 224, 6 at 512; --quick max(2, ceil(6 x (224/S)^2)))")
    args = ap.parse_args(argv)
    if args.quick:
        args.reuse = True
    return args


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    t_wall0 = time.time()
    os.makedirs(args.results, exist_ok=True)
    result = run_header()
    result.update({"threads": args.threads, "argv": sys.argv[1:], "models": {}})
    cpu = result["cpu"]
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, avx512_vnni={cpu['avx512_vnni']} avx512_bf16={cpu['avx512_bf16']} "
          f"amx_bf16={cpu['amx_bf16']}; git {result['git']}; env: "
          f"{' '.join(f'{k}={v}' for k, v in sorted(result['env'].items())) or '-'}\n", flush=True)
    exit_code = 0
    if not args.backbone_only:
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            path, title = MODELS.get(key, (os.path.abspath(key), None))
            if title is None:
                key = os.path.basename(os.path.dirname(path)) if os.path.basename(path) == "model.onnx" \
                    else os.path.splitext(os.path.basename(path))[0]
                title = key
            if not os.path.exists(path):
                msg = f"{title}: no model at {path} (bash Benchmarks/setup_venv.sh --model makes t224 and b384)"
                print(f"error: {msg}", file=sys.stderr)
                result["failures"].append(msg)
                exit_code = max(exit_code, 2)
                continue
            code, result["models"][key] = model_section(args, key, path, title, t_start)
            result["failures"] += result["models"][key]["failures"]
            exit_code = max(exit_code, code)
            write_json(os.path.join(args.results, "latest.json"), result)
    if args.backbone or args.backbone_only:
        print()
        code, result["backbone"] = backbone_section(args)
        result["failures"] += result["backbone"].get("failures", [])
        exit_code = max(exit_code, code)
    total = time.perf_counter() - t_start
    result["total_s"] = total
    print(f"total benchmark time: {total:.0f} s")
    out_json = os.path.join(args.results, "latest.json")
    write_json(out_json, result)
    # Every run also kept under its start time: latest.json is the next run's.
    kept = os.path.join(args.results, "runs", time.strftime("%Y%m%d-%H%M%S", time.localtime(t_wall0)) + ".json")
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    write_json(kept, result)
    print(f"results: {out_json} (and {kept})")
    for msg in result["failures"]:
        print(f"FAILED: {msg}", file=sys.stderr)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
