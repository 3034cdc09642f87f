#!/usr/bin/env python3
"""Where an int8 .cnx spends its time: a perf profile of `convnext-convert bench` folded into parts.

Reads the output of
    perf report -i PERF.data --no-children --sort dso,sym,srcline --stdio -g none -t '|'
(stdin or --report FILE) and prints one table: each part's share of the samples of the
benchmark process, all threads together (a waiting thread costs nothing unless it spins, and the
runtime's pool spins: its share is the "thread pool" row). Run by Benchmarks/profile_int8.sh,
which says how the profile is taken; see Benchmarks/PROFILE.md.

The int8 GEMMs are split by source line: the lines between the markers `profile: dot-product
loop begins` and `profile: dot-product loop ends` in the int8 kernel files are the vpdpbusd
loops; lines of activation.h inside an int8 GEMM symbol are the activation applied in its
epilogue; the rest of an int8 GEMM symbol (dequantize, requantize, residual add, stores, tile
set-up) is the epilogue proper.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KERNELS = os.path.join(ROOT, "Sources", "CKernels")
INT8_FILES = ["fast_qgemm_avx512.c", "fast_qgemm_avx2.c", "fast_qgemm.c", "neon_qgemm.c"]

# int8 GEMM symbols: the AVX-512 tiles tile512_MR_NB_MODE, the ymm tiles, the drivers and the
# epilogue-from-buffer entry points.
INT8_GEMM = re.compile(r"^(tile512_\d+_\d+_\d+|(vnni|avx2)_\d+_\d+|tile_vnni\w*|tile_avx2\w*|cnx_qgemm_run_\w+|"
                       r"cnx_qepilogue_\w+|gemm_portable|gemm_ref|qtile\w*|neon_q\w*)$")

PARTS = [
    ("gemm_dot", "int8 GEMM: dot-product loops (vpdpbusd)"),
    ("gemm_act", "int8 GEMM epilogue: activation (GELU)"),
    ("gemm_epi", "int8 GEMM epilogue: dequantize, requantize, residual, stores"),
    ("quantize", "activation quantization float -> u8 (LayerNorm output)"),
    ("dwconv", "depthwise 7x7 (bfloat16 in int8 and bf16 blocks, else float)"),
    ("norm", "LayerNorm and other norms (float)"),
    ("float_gemm", "float GEMMs: stem, head (float layers)"),
    ("stem_layout", "stem patches, pooling, layout"),
    ("pool", "thread pool: spinning, waking, scheduling"),
    ("load", "loading: packing weights, checksums (once per process)"),
    ("swift", "Swift executor and runtime"),
    ("kernel", "kernel: page faults, syscalls, interrupts"),
    ("other", "other"),
]


def dot_ranges():
    """{file: [(first, last), ...]}: the marked dot-product loops of the int8 kernel files."""
    ranges = {}
    for name in INT8_FILES:
        path = os.path.join(KERNELS, name)
        if not os.path.exists(path):
            continue
        start = None
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if "profile: dot-product loop begins" in line:
                    start = number
                elif "profile: dot-product loop ends" in line and start is not None:
                    ranges.setdefault(name, []).append((start, number))
                    start = None
    return ranges


def classify(dso, sym, srcline, ranges):
    kernel = dso.startswith("[kernel") or sym.startswith("[k]")
    name = sym.split("]", 1)[1].strip() if "]" in sym else sym.strip()
    file, _, line = srcline.rpartition(":")
    file = os.path.basename(file)
    try:
        line = int(line)
    except ValueError:
        line = -1
    if kernel:
        if re.search(r"sched|switch|futex|yield|schedule|idle|wake", name):
            return "pool"
        return "kernel"
    if INT8_GEMM.match(name):
        if file == "activation.h":
            return "gemm_act"
        if any(a <= line <= b for a, b in ranges.get(file, [])):
            return "gemm_dot"
        return "gemm_epi"
    if name.startswith("cnx_quantize_u8") or name == "cnx_quantize_u8_one":
        return "quantize"
    if "dwconv" in name or file.startswith(("fast_dwconv", "neon_dwconv")):
        return "dwconv"
    if "layernorm" in name or "norm_rows" in name or "rmsnorm" in name or file in ("fast_layernorm.c", "neon_norm.c"):
        return "norm"
    if name.startswith(("cnx_qgemm_pack", "cnx_gemm_pack", "cnx_hgemm_pack")) or "crc32" in name or "pack_b" in name:
        return "load"
    if file in ("fast_gemm.c", "fast_hgemm.c", "fast_hgemm_avx512.c", "neon_gemm.c") or re.match(r"^(tile512_\d+|tile256_\d+|gemm_blocked)", name):
        return "float_gemm"
    if file in ("fast_stem.c", "fast_layout.c") or name.startswith(("cnx_stem", "cnx_reduce", "cnx_nchw", "cnx_nhwc")):
        return "stem_layout"
    if file == "pool.c" or name.startswith(("cnx_pool", "worker_main")) or "sched_yield" in name or "pthread" in name:
        return "pool"
    if dso.startswith("libswift") or name.startswith("$s") or name.startswith("swift_"):
        return "swift"
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", help="perf report text (default: stdin)")
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--top", type=int, default=12, help="also list the N hottest symbols")
    args = ap.parse_args()
    text = open(args.report, encoding="utf-8", errors="replace").read() if args.report else sys.stdin.read()
    ranges = dot_ranges()
    shares = {key: 0.0 for key, _ in PARTS}
    symbols = {}
    total = 0.0
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in raw.split("|")]
        if len(fields) < 4 or not fields[0].endswith("%"):
            continue
        pct = float(fields[0].rstrip("%"))
        dso, sym, srcline = fields[1], fields[2], fields[3]
        part = classify(dso, sym, srcline, ranges)
        shares[part] += pct
        total += pct
        name = sym.split("]", 1)[1].strip() if "]" in sym else sym
        symbols[name] = symbols.get(name, 0.0) + pct
    if total <= 0:
        sys.exit("profile_int8.py: no samples in the perf report")
    print(f"{'part':<64} {'share':>7}")
    for key, label in PARTS:
        print(f"{label:<64} {100 * shares[key] / total:6.1f}%")
    gemm = sum(shares[k] for k in ("gemm_dot", "gemm_act", "gemm_epi"))
    print(f"{'  int8 GEMMs in all':<64} {100 * gemm / total:6.1f}%")
    if args.top:
        print(f"\nhottest symbols (share of all samples)")
        for name, pct in sorted(symbols.items(), key=lambda kv: -kv[1])[: args.top]:
            short = name if len(name) <= 70 else name[:67] + "..."
            print(f"  {short:<72} {100 * pct / total:6.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"parts": {label: round(100 * shares[key] / total, 2) for key, label in PARTS},
                       "symbols": {k: round(100 * v / total, 2) for k, v in sorted(symbols.items(), key=lambda kv: -kv[1])[:40]}},
                      f, indent=1)


if __name__ == "__main__":
    main()
