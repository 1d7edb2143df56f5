"""The ΔAPD90 surrogate against fresh ORd simulations it never saw, and what each costs.

    python benchmarks/bench_ord_surrogate.py [--random 60] [--seed 7]

New block vectors (not in ``vtrial/data/ord_apd90_design.csv``): every library drug at free
concentrations between the design's grid points (1/20 … 20 × free Cmax, hERG block ≤ 0.9) and
``--random`` multichannel vectors from another seed, paced as the design was (the surrogate's own
conductance factors, steady state and beat count). Prints the surrogate's errors (ms) on both and the
time per ORd batch and per surrogate call; one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ord import pace
from vtrial.physiology.ord_surrogate import delta_apd90_ms, random_blocks, surrogate
from vtrial.spec.drugs import drug_curve_blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    m = surrogate()
    drug_rows = [b for _, _, b in drug_curve_blocks([0.05, 0.2, 0.7, 2.0, 6.0, 20.0])]
    rand = random_blocks(args.random, np.random.default_rng(args.seed))
    block = np.vstack([np.zeros((1, len(CHANNELS))), np.array(drug_rows), rand])
    t0 = time.perf_counter()
    apd = pace(block, m["beats"], m["cycle_ms"], base=m["conductance_factors"], state=m["steady_state"])[0][-1]
    ord_s = time.perf_counter() - t0
    truth = apd - apd[0]
    t0 = time.perf_counter()
    pred = delta_apd90_ms(block)
    surrogate_s = time.perf_counter() - t0
    ok = apd < m["cycle_ms"]
    n_drug = len(drug_rows)
    err = pred - truth
    drugs, randoms = slice(1, 1 + n_drug), slice(1 + n_drug, None)
    out = {
        "benchmark": "ord_surrogate",
        "beats": m["beats"],
        "cells": int(len(block)),
        "control_apd90_ms": float(apd[0]),
        "control_apd90_ms_shipped": m["apd90_control_ms"],
        "drug_points": n_drug,
        "random_points": args.random,
        "failed_to_repolarize": int((~ok).sum()),
        "rmse_drug_ms": float(np.sqrt(np.mean(err[drugs][ok[drugs]] ** 2))),
        "max_abs_drug_ms": float(np.abs(err[drugs][ok[drugs]]).max()),
        "rmse_random_ms": float(np.sqrt(np.mean(err[randoms][ok[randoms]] ** 2))),
        "max_abs_random_ms": float(np.abs(err[randoms][ok[randoms]]).max()),
        "ord_seconds_per_batch": ord_s,
        "ord_seconds_per_beat": ord_s / m["beats"],
        "surrogate_seconds_per_call": surrogate_s,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
