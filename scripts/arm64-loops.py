#!/usr/bin/env python3
"""Instruction counts of the arm64 kernels' inner loops, from the disassembly.

Usage: scripts/arm64-loops.py BINARY [OBJDUMP]
BINARY is an aarch64 build of the kernels (scripts/arm64-test.sh --keep DIR leaves
DIR/kernels_test.gcc and DIR/kernels_test.clang). For each kernel below, the function's loops are
found from its backward branches; the hot loop is the one with the most of the kernel's work
instructions (FMLA, SDOT, ...) that contains no other loop. Prints one line per kernel: loop size
and the instruction mix, with the work per iteration. Static counts only: emulation tells nothing
of speed (Sources/CKernels/ARM64.md).
"""
import collections
import re
import subprocess
import sys

# function, work mnemonics, what one iteration computes
KERNELS = [
    ("gemm_tile_6", {"fmla"}, "float GEMM 6x16 tile, 1 k: 96 multiply-adds"),
    ("dw_row_7_2_0", {"fmla"}, "depthwise 7x7, 8 channels x 7 pixels, 1 kernel row: 392 multiply-adds"),
    ("norm_rows", {"fadd"}, "LayerNorm mean pass, 16 columns"),
    ("norm_rows", {"fmla"}, "LayerNorm / RMSNorm variance pass, 16 columns"),
    ("act_gelu", {"tbl"}, "exact GELU, 8 values"),
    ("act_gelu_tanh", {"fdiv"}, "tanh GELU, 8 values"),
    ("act_silu", {"fdiv"}, "SiLU, 8 values"),
    ("i8mm_5", {"sudot"}, "int8 i8mm 5x16 tile, 16 k: 1280 multiply-adds"),
    ("dotprod_5", {"sdot"}, "int8 dotprod 5x16 tile, 16 k: 1280 multiply-adds"),
    ("neon_4", {"smlal", "smlal2"}, "int8 neon 4x16 tile, 4 k: 256 multiply-adds"),
    ("bf16_tile", {"bfdot"}, "half bf16 BFDOT 4x16 tile, 2 k: 128 multiply-adds"),
    ("f16_tile", {"fmla"}, "half float16 FCVTL 4x16 tile, 1 k: 64 multiply-adds"),
]

LINE = re.compile(r"^\s*([0-9a-f]+):\s+([a-z0-9.]+)\s*(.*)$")
BRANCH = re.compile(r"^(b\.[a-z]+|cbn?z|tbn?z)$")


def functions(text):
    funcs, name = {}, None
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            name = m.group(1)
            funcs[name] = []
            continue
        m = LINE.match(line)
        if m and name:
            funcs[name].append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def loops(insns):
    """(start, end) address pairs of backward conditional branches."""
    out = []
    for addr, op, args in insns:
        if BRANCH.match(op) or op == "b":
            m = re.search(r"\b([0-9a-f]+) <", args)
            if m and int(m.group(1), 16) <= addr and op != "b":
                out.append((int(m.group(1), 16), addr))
    return out


def main():
    binary = sys.argv[1]
    objdump = sys.argv[2] if len(sys.argv) > 2 else "aarch64-linux-gnu-objdump"
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", binary], check=True,
                          capture_output=True, text=True).stdout
    funcs = functions(text)
    for name, work, what in KERNELS:
        # Static functions may be cloned by the compiler (name.constprop.0, ...).
        candidates = [f for f in funcs if f == name or f.startswith(name + ".")]
        if not candidates:
            print(f"{name:32s} not found")
            continue
        best = None
        for fname in candidates:
            insns = funcs[fname]
            spans = loops(insns)
            for s, e in spans:
                if any(s < s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in spans):
                    continue  # contains another loop
                body = [op for a, op, _ in insns if s <= a <= e]
                n_work = sum(op in work for op in body)
                if best is None or n_work > best[0]:
                    best = (n_work, body)
        if not best or best[0] == 0:
            print(f"{name:32s} no loop with {'/'.join(sorted(work))}")
            continue
        n_work, body = best
        mix = collections.Counter(body)
        loads = sum(v for k, v in mix.items() if k.startswith("ld"))
        stores = sum(v for k, v in mix.items() if k.startswith("st"))
        detail = ", ".join(f"{v} {k}" for k, v in mix.most_common())
        print(f"{name:32s} {len(body):4d} instructions: {n_work} work, {loads} loads, {stores} stores "
              f"({what})\n{'':33s}{detail}")


if __name__ == "__main__":
    main()
