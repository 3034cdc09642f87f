#!/usr/bin/env python3
"""Family benchmark: this project against ONNX Runtime on full-size timm ConvNeXt variants.

Run it through Benchmarks/run_families.sh (venvs, exports, release build):

    bash Benchmarks/run_families.sh                       # every family, 5 rounds each
    bash Benchmarks/run_families.sh --quick               # 2 rounds, fewer iterations
    bash Benchmarks/run_families.sh --families convnext_atto_rms,test_convnext

For each family exported by Benchmarks/export_families.py (Fixtures/large/families/<name>/):

1. `convnext-convert convert model.onnx` (failures are reported, not fatal);
2. `convnext-convert inspect` on the .cnx: the model is *fused* when every operator is one of this
   project's fused operators (`cnx.*`); anything else runs on the reference kernels;
3. correctness first: `convnext-convert run` on input.npy against ONNX Runtime's output on the
   same input (the session that is timed): max |ours - ORT| / max |ORT| must be <= 1e-5, else the
   row is WRONG (exit status 3); ONNX Runtime against PyTorch is shown too;
4. timing: batch 1, 2 threads, rounds alternating which runtime goes first; ONNX Runtime in its own
   worker process (Benchmarks/benchlib.py's), ours as `convnext-convert bench --json`, one process
   per round; medians over all timed iterations of the rounds kept. A round in which other processes
   used more than 10% of the CPU is noisy: noisy rounds are replaced by extra ones within the
   budget, and the row says so when too few rounds were quiet.

Prints one table (family, our ms, ORT ms, ratio, fused, agreement) and writes
Benchmarks/results/families.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as bench  # noqa: E402  (the worker processes, our tool's launcher, statistics, noise accounting)

ROOT = bench.ROOT
DEFAULT_DIR = os.path.join(ROOT, "Fixtures", "large", "families")
AGREEMENT_TOL = 1e-5      # max |ours - ORT| / max |ORT|, as issue 11 asks
TURN_MS = 1000.0          # aim for about this long per runtime per round


def fused_ops(inspect_stdout: str):
    """The `operators (N nodes):` section of `inspect`: {op: count}."""
    ops, inside = {}, False
    for line in inspect_stdout.splitlines():
        if line.startswith("operators ("):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s+(\S+)\s+(\d+)\s*$", line)
            if not m:
                break
            ops[m.group(1)] = int(m.group(2))
    return ops


def describe_ops(ops):
    left = {k: v for k, v in ops.items() if not k.startswith("cnx.")}
    if not ops:
        return None, "no operators listed"
    if not left:
        return True, f"yes ({sum(ops.values())} ops)"
    top = ", ".join(f"{k} {v}" for k, v in sorted(left.items(), key=lambda kv: -kv[1])[:4])
    return False, f"no: {sum(left.values())} of {sum(ops.values())} ops unfused ({top})"


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def family_names(directory, only):
    names = sorted(d for d in os.listdir(directory)
                   if os.path.exists(os.path.join(directory, d, "model.onnx"))) if os.path.isdir(directory) else []
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise SystemExit(f"error: no export for {', '.join(missing)} in {directory} "
                             f"(Benchmarks/export_families.py --only ...)")
        names = wanted
    return names


def run_family(name, args, results_dir, tmp, t_budget0):
    fam_dir = os.path.join(args.dir, name)
    model, x_path = os.path.join(fam_dir, "model.onnx"), os.path.join(fam_dir, "input.npy")
    meta = {}
    if os.path.exists(os.path.join(fam_dir, "meta.json")):
        with open(os.path.join(fam_dir, "meta.json")) as f:
            meta = json.load(f)
    res = {"family": name, "meta": meta}
    binary = os.path.abspath(args.binary)

    # ONNX Runtime: the worker that is timed also gives the reference output.
    worker = None
    try:
        worker = bench.Worker(bench.ORT, model, 1, args.threads, (224, 224))
        worker.call(cmd="input", path=x_path)
        y_ort_path = os.path.join(tmp, f"{name}_ort.npy")
        worker.call(cmd="infer", out=y_ort_path)
        y_ort = np.load(y_ort_path)
        res["ort_version"] = worker.info["version"]
        if os.path.exists(os.path.join(fam_dir, "torch.npy")):
            res["ort_vs_torch"] = rel(y_ort, np.load(os.path.join(fam_dir, "torch.npy")))
    except Exception as e:
        res["ort_error"] = " ".join(str(e).split())[:300]
        if worker is not None:
            worker.close()
        worker, y_ort = None, None

    # Ours: convert, inspect, run.
    ours = None
    cnx = os.path.join(results_dir, f"{name}.cnx")
    if args.no_ours:
        res["ours_error"] = "skipped (--no-ours)"
    elif not os.path.exists(binary):
        res["ours_error"] = f"no binary at {binary}"
    else:
        if os.path.exists(cnx):
            os.remove(cnx)
        rc, out, err, wall, rss = bench.run_child([binary, "convert", model, cnx], timeout=args.timeout)
        res["convert"] = {"ok": rc == 0 and os.path.exists(cnx), "wall_s": wall, "peak_rss_mb": rss}
        m = re.search(r"graph:\s+(\d+) nodes -> (\d+)", out)
        if m:
            res["convert"]["nodes"] = [int(m.group(1)), int(m.group(2))]
        if not res["convert"]["ok"]:
            res["ours_error"] = "convert failed: " + bench.short_error(err, out, rc)
        else:
            rc, out, err, _, _ = bench.run_child([binary, "inspect", cnx], timeout=args.timeout)
            res["ops"] = fused_ops(out) if rc == 0 else {}
            res["fused"], res["fused_text"] = describe_ops(res["ops"]) if rc == 0 else \
                (None, "inspect failed: " + bench.short_error(err, out, rc))
            y_path = os.path.join(tmp, f"{name}_ours.npy")
            rc, out, err, _, _ = bench.run_child([binary, "run", cnx, "--input", x_path, "--output", y_path,
                                                  "--threads", str(args.threads)], timeout=args.timeout)
            if rc != 0 or not os.path.exists(y_path):
                res["ours_error"] = "run failed: " + bench.short_error(err, out, rc)
            else:
                y = np.load(y_path)
                if y_ort is not None:
                    res["ours_vs_ort"] = rel(y, y_ort)
                if os.path.exists(os.path.join(fam_dir, "torch.npy")):
                    res["ours_vs_torch"] = rel(y, np.load(os.path.join(fam_dir, "torch.npy")))
                ours = bench.OurBench(binary, cnx, 1, args.threads, "ours")
    if "ours_vs_ort" in res:
        res["check"] = "ok" if res["ours_vs_ort"] <= AGREEMENT_TOL else "WRONG"

    # Iterations per turn: about TURN_MS, from ONNX Runtime's speed (ours is similar or faster).
    iters = args.iterations
    if worker is not None and not iters:
        probe = worker.call(cmd="time", warmup=1, iterations=2)["samples_ms"]
        iters = int(min(40, max(3, math.ceil(TURN_MS / max(1e-3, float(np.median(probe)))))))
        if args.quick:
            iters = max(2, iters // 4)
    iters = iters or 5
    res["iterations"] = iters

    # Interleaved rounds.
    samples, shares = {}, []
    pids = [worker.proc.pid] if worker else []
    r, max_rounds = 0, args.rounds if (args.quick or args.no_extra_rounds) else 2 * args.rounds
    while worker is not None or ours is not None:
        if r >= args.rounds:
            quiet = sum(1 for s in shares if s is None or s <= bench.NOISY_SHARE)
            if quiet >= args.rounds or r >= max_rounds or time.perf_counter() - t_budget0 > args.budget:
                break
        t_r, busy0, own0 = time.perf_counter(), bench.machine_busy_s(), bench.own_cpu_s(pids)
        order = ["ort", "ours"] if r % 2 == 0 else ["ours", "ort"]
        for who in order:
            time.sleep(bench.PAUSE_S)
            try:
                if who == "ort" and worker is not None:
                    samples[r] = worker.call(cmd="time", warmup=2, iterations=iters)["samples_ms"]
                elif who == "ours" and ours is not None:
                    ours.round(r, iters, args.timeout)
            except Exception as e:
                msg = f"failed in round {r + 1}: {' '.join(str(e).split())}"[:300]
                if who == "ort":
                    res["ort_error"] = msg
                    worker.close()
                    worker = None
                else:
                    res["ours_error"] = msg
                    ours = None
        busy1, own1 = bench.machine_busy_s(), bench.own_cpu_s(pids)
        share = None
        if busy0 is not None and busy1 is not None:
            wall = max(1e-6, time.perf_counter() - t_r)
            share = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
        shares.append(share)
        r += 1
    if worker is not None:
        worker.close()
    quiet = [i for i, s in enumerate(shares) if s is None or s <= bench.NOISY_SHARE]
    keep = set(quiet) if len(quiet) >= max(1, (args.rounds + 1) // 2) else set(range(len(shares)))
    res.update({"rounds": len(shares), "rounds_used": sorted(keep), "foreign_cpu_share_by_round": shares,
                "noisy": len(keep) == len(shares) and len(quiet) < len(shares)})
    ort_samples = [v for i in sorted(keep) for v in samples.get(i, [])]
    if ort_samples:
        res["ort"] = bench.stats_from_samples(ort_samples)
    if ours is not None and ours.rounds:
        res["ours"] = bench.stats_for_ours(ours, keep)
    if "ours" in res and "ort" in res:
        res["ratio"] = res["ours"]["median_ms"] / res["ort"]["median_ms"]
    return res


def print_table(rows):
    head = (f"{'family':<26} {'params':>7} {'ours ms':>8} {'ORT ms':>8} {'t/ORT':>6}  {'ours vs ORT':>11} "
            f"{'check':<5} {'noise':<5}  fused")
    print(head)
    print("-" * max(len(head), 110))
    for r in rows:
        p = r["meta"].get("parameters")
        ours = r.get("ours", {}).get("median_ms")
        ort = r.get("ort", {}).get("median_ms")
        agree = r.get("ours_vs_ort")
        noise = "NOISY" if r.get("noisy") else "ok"
        fused = r.get("fused_text") or ("-" if "ours_error" in r else "?")
        cells = [f"{p / 1e6:.1f}M" if p else "-", f"{ours:.2f}" if ours else "-", f"{ort:.2f}" if ort else "-",
                 f"{r['ratio']:.2f}" if "ratio" in r else "-", f"{agree:.1e}" if agree is not None else "-"]
        line = (f"{r['family']:<26} {cells[0]:>7} {cells[1]:>8} {cells[2]:>8} {cells[3]:>6}  {cells[4]:>11} "
                f"{r.get('check', '-'):<5} {noise:<5}  {fused}")
        print(line)
        for key in ("ours_error", "ort_error"):
            if key in r:
                print(f"{'':<26} {key.replace('_', ' ')}: {r[key]}")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=DEFAULT_DIR, help="the exports (default Fixtures/large/families)")
    ap.add_argument("--families", default=None, help="comma-separated family names (default: every export)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per family (default 5; --quick 2)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="timed iterations per runtime per round (default: about 1 s of ONNX Runtime, 3 to 40)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--binary", default=bench.DEFAULT_BINARY)
    ap.add_argument("--no-ours", action="store_true", help="ONNX Runtime only (the release build failed)")
    ap.add_argument("--results", default=bench.DEFAULT_RESULTS)
    ap.add_argument("--budget", type=float, default=600.0,
                    help="seconds after which no extra round replaces a noisy one (default 600)")
    ap.add_argument("--no-extra-rounds", action="store_true")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    return args


def main(argv=None):
    args = parse_args(argv)
    names = family_names(args.dir, args.families)
    if not names:
        print(f"error: no exports in {args.dir} (Benchmarks/export_families.py)", file=sys.stderr)
        return 2
    os.makedirs(args.results, exist_ok=True)
    header = bench.run_header()
    cpu = header["cpu"]
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores; binary {args.binary}; git {header['git']}; "
          f"{args.threads} threads, batch 1, 224x224, {args.rounds} rounds per family; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnx-families-") as tmp:
        for name in names:
            t = time.perf_counter()
            r = run_family(name, args, args.results, tmp, t0)
            rows.append(r)
            share = [s for s in r.get("foreign_cpu_share_by_round", []) if s is not None]
            print(f"  {name}: {r.get('rounds', 0)} rounds x {r.get('iterations', '-')} iterations, "
                  f"{time.perf_counter() - t:.0f} s"
                  + (f", other processes up to {100 * max(share):.0f}% of the CPU" if share else ""), flush=True)
    print()
    print_table(rows)
    wrong = [r["family"] for r in rows if r.get("check") == "WRONG"]
    unfused = [r["family"] for r in rows if r.get("fused") is False]
    print()
    print(f"fully fused: {sum(1 for r in rows if r.get('fused'))} of {len(rows)}"
          + (f"; not fused: {', '.join(unfused)}" if unfused else ""))
    if wrong:
        print(f"WRONG (ours vs ONNX Runtime above {AGREEMENT_TOL:g}): {', '.join(wrong)}")
    noisy = [r["family"] for r in rows if r.get("noisy")]
    if noisy:
        print(f"NOISY (other processes above {100 * bench.NOISY_SHARE:.0f}% of the CPU in most rounds; rerun on a "
              f"quiet machine): {', '.join(noisy)}")
    header.update({"families": rows, "threads": args.threads, "total_s": time.perf_counter() - t0,
                   "loadavg_end": os.getloadavg()})
    out = os.path.join(args.results, "families.json")
    with open(out + ".tmp", "w") as f:
        json.dump(header, f, indent=1, default=str)
    os.replace(out + ".tmp", out)
    print(f"total {time.perf_counter() - t0:.0f} s; results: {out}")
    return 3 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
