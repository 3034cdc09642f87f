#!/usr/bin/env python3
"""Fits the piecewise polynomials of the SIMD GELU and prints them as a C table.

GELU(x) = relu(x) - a Q(a) with a = |x| and Q(a) = Phi(-a), the normal tail. The kernels
approximate Q on [0, 6) by N equal intervals, on each a polynomial of degree D in the position
u = a N / 6 - floor(a N / 6) in [0, 1); a lane permute fetches each lane's coefficients (row j of
the table: the u^j coefficients, one column per interval). Past 6 the kernels use relu (a Q(a) <
6e-9 there).

The fit: for each interval, least squares on 4001 points reweighted (Lawson's iteration) toward
the minimax of a |P(u) - Q(a)|, the error the GELU sees (the first interval's constant pinned to
Q(0) = 1/2, so that GELU(x) = x / 2 exactly for tiny x); the coefficients are then rounded to
float. The error printed is of the float pipeline the kernels run (coefficients in float, Horner
steps with one rounding each, as fused multiply-adds), against Q in double.

    python3 scripts/gelu-table.py --intervals 32 --degree 4   # the AVX-512 table (gelu_table.c)
    python3 scripts/gelu-table.py --intervals 16 --degree 5   # the NEON table
    python3 scripts/gelu-table.py --intervals 32 --degree 2   # the quadratic GELU (gelu_table.c)

Needs numpy only.
"""
import argparse
import math

import numpy as np

AMAX = 6.0


def q_tail(a):
    return np.array([0.5 * math.erfc(x / math.sqrt(2.0)) for x in a])


def fit_interval(i, n, degree, points=4001, rounds=60):
    u = np.linspace(0.0, 1.0, points)
    a = (i + u) * AMAX / n
    q = q_tail(a)
    v = np.vander(u, degree + 1, increasing=True)
    if i == 0:
        # Q(0) = 1/2 exactly, so that GELU(x) = x / 2 to the last bit for tiny x.
        q = q - 0.5
        v = v[:, 1:]
    scale = np.maximum(a, 1e-3)  # the error that matters is a (P - Q)
    weight = np.ones_like(u)
    for _ in range(rounds):
        w = np.sqrt(weight) * scale
        c, *_ = np.linalg.lstsq(v * w[:, None], q * w, rcond=None)
        err = np.abs(v @ c - q) * scale
        weight = weight * (err / err.max() + 1e-3)
        weight /= weight.sum()
    return np.concatenate([[0.5], c]) if i == 0 else c


def float_pipeline_error(coef, i, n, points=20001):
    """Largest |a P(u) - a Q(a)| over the interval, P evaluated as the kernels do in float."""
    u = np.linspace(0.0, 1.0, points, endpoint=False).astype(np.float32)
    a = (i + u.astype(np.float64)) * AMAX / n
    p = np.full_like(u, coef[-1])
    for c in coef[-2::-1]:
        # A fused multiply-add: the product is exact in double, one rounding to float.
        p = (p.astype(np.float64) * u.astype(np.float64) + np.float64(c)).astype(np.float32)
    return float(np.max(np.abs(a * p.astype(np.float64) - a * q_tail(a))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intervals", type=int, default=32)
    ap.add_argument("--degree", type=int, default=4)
    args = ap.parse_args()
    n, d = args.intervals, args.degree
    table = np.zeros((d + 1, n), dtype=np.float32)
    worst = 0.0
    for i in range(n):
        c = fit_interval(i, n, d).astype(np.float32)
        table[:, i] = c
        worst = max(worst, float_pipeline_error(c, i, n))
    print(f"// {n} intervals, degree {d}: largest |a P - a Q| in float {worst:.2e}")
    print(f"const float cnx_gelu_q{n}[{d + 1}][{n}] __attribute__((aligned(64))) = {{")
    for row in table:
        print("    {" + ", ".join(f"{float(v):.9e}f" for v in row) + "},")
    print("};")


if __name__ == "__main__":
    main()
