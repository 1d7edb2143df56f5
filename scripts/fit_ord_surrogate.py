"""Simulate the ORd cell under a design of block vectors and fit the ΔAPD90 surrogate.

    python scripts/fit_ord_surrogate.py [--beats 20] [--prepace 150] [--random 700] [--seed 0] [--reuse]

Design (seeded): each library drug's block over free concentrations from 1/30 to 30 × its free
therapeutic Cmax (13 log-spaced points), each channel alone at 8 levels, and ``--random`` multichannel
vectors (each channel unblocked with probability 0.35, else 0.9·u² with u uniform, hERG up to 0.85).
The cell is CiPA's optimized ORd (``CIPA_V1_FACTORS`` on the 2011 conductances, the original
Hodgkin–Huxley IKr; ``vtrial.physiology.ord``), first paced ``--prepace`` beats at 1 Hz without block to
its own steady state; from there every vector is paced ``--beats`` beats (ΔAPD90 at beat 10 and 40
differ by up to 1.5 ms);
cells that fail to repolarize within the cycle are kept in the design file but not fitted. A 7→32→32→1
tanh network (torch, Adam, full batch, seeded) is fitted to log(APD90 / control APD90) on 85 % of the
fitted rows; the rest give the held-out error. Writes vtrial/data/ord_apd90_design.csv (the simulations)
and vtrial/data/ord_apd90.json (the network and its errors). ``--reuse`` refits from the design file
without simulating again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import torch
from rich.progress import track

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ord import CIPA_V1_FACTORS, pace
from vtrial.physiology.ord_surrogate import MAX_HERG_BLOCK_RANDOM, delta_apd90_ms, random_blocks
from vtrial.spec.drugs import drug_curve_blocks

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "vtrial" / "data" / "ord_apd90_design.csv"
MODEL = ROOT / "vtrial" / "data" / "ord_apd90.json"
CYCLE_MS = 1000.0
HIDDEN = 32


def design(n_random: int, seed: int) -> pl.DataFrame:
    rows = [("control", 0.0, np.zeros(len(CHANNELS)))]
    rows += drug_curve_blocks(np.logspace(-np.log10(30), np.log10(30), 13))
    for k, ch in enumerate(CHANNELS):
        for level in (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9):
            if ch == "hERG" and level > MAX_HERG_BLOCK_RANDOM:
                continue
            b = np.zeros(len(CHANNELS))
            b[k] = level
            rows.append((f"only_{ch}", float("nan"), b))
    rows += [("random", float("nan"), b) for b in random_blocks(n_random, np.random.default_rng(seed))]
    block = np.array([r[2] for r in rows])
    return pl.DataFrame(
        {
            "source": [r[0] for r in rows],
            "conc_free_nM": [r[1] for r in rows],
            **{f"block_{ch}": block[:, k] for k, ch in enumerate(CHANNELS)},
        }
    )


def steady_state(beats: int) -> dict:
    """The unblocked cell's state after ``beats`` beats from the 2011 model's published steady state."""
    state = None
    for _ in track(range(beats // 10), description=f"pacing the unblocked cell {beats} beats"):
        _, state = pace(np.zeros((1, len(CHANNELS))), 10, CYCLE_MS, base=CIPA_V1_FACTORS, state=state)
    return state


def simulate(df: pl.DataFrame, beats: int, state: dict, chunk: int = 400) -> np.ndarray:
    block = df.select([f"block_{ch}" for ch in CHANNELS]).to_numpy()
    apd = np.empty(len(block))
    for lo in track(range(0, len(block), chunk), description=f"ORd, {beats} beats per chunk of {chunk}"):
        apd[lo : lo + chunk] = pace(block[lo : lo + chunk], beats, CYCLE_MS, base=CIPA_V1_FACTORS, state=state)[0][-1]
    return apd


def fit_network(block: np.ndarray, target: np.ndarray, train: np.ndarray, seed: int, epochs: int = 6000):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(len(CHANNELS), HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN, 1),
    ).double()
    x = torch.as_tensor(block[train])
    y = torch.as_tensor(target[train])[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.mean((net(x) - y) ** 2)
        loss.backward()
        opt.step()
        sched.step()
    return [
        (m.weight.detach().numpy().T.tolist(), m.bias.detach().numpy().tolist())
        for m in net
        if isinstance(m, torch.nn.Linear)
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beats", type=int, default=20)
    ap.add_argument("--prepace", type=int, default=150)
    ap.add_argument("--random", type=int, default=700)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="refit from the existing design file")
    args = ap.parse_args()
    if args.reuse:
        df = pl.read_csv(DESIGN)
        old = json.loads(MODEL.read_text())
        beats, prepace, state = old["beats"], old["prepace_beats"], old["steady_state"]
    else:
        df = design(args.random, args.seed)
        beats, prepace = args.beats, args.prepace
        state = {k: float(v[0]) for k, v in steady_state(prepace).items()}
        df = df.with_columns(pl.Series("apd90_ms", simulate(df, beats, state)))
        df.write_csv(DESIGN, float_precision=6)
    block = df.select([f"block_{ch}" for ch in CHANNELS]).to_numpy()
    apd = df["apd90_ms"].to_numpy()
    control = float(apd[df["source"].to_numpy() == "control"][0])
    ok = apd < CYCLE_MS
    idx = np.flatnonzero(ok)
    rng = np.random.default_rng(args.seed)
    test = np.zeros(len(df), bool)
    test[rng.choice(idx, size=len(idx) * 15 // 100, replace=False)] = True
    train = ok & ~test
    layers = fit_network(block, np.log(apd / control), train, args.seed)
    model = {"apd90_control_ms": control, "layers": layers}
    err = delta_apd90_ms(block, model) - (apd - control)
    drug_rows = (
        ok
        & ~np.isin(df["source"].to_numpy(), ["random", "control"])
        & ~df["source"].str.starts_with("only_").to_numpy()
    )
    fitted = {
        "method": "7→32→32→1 tanh network on log(APD90 / control), Adam, 6000 full-batch epochs, 85 % of the rows",
        "rows": int(len(df)),
        "failed_to_repolarize": int((~ok).sum()),
        "rmse_train_ms": float(np.sqrt(np.mean(err[train] ** 2))),
        "rmse_heldout_ms": float(np.sqrt(np.mean(err[test] ** 2))),
        "max_abs_heldout_ms": float(np.abs(err[test]).max()),
        "rmse_drug_curves_ms": float(np.sqrt(np.mean(err[drug_rows] ** 2))),
    }
    out = {
        "about": (
            "ΔAPD90 surrogate of the O'Hara–Rudy endocardial cell with CiPA's conductance factors "
            "(conductance block, 1 Hz), fitted by scripts/fit_ord_surrogate.py to the simulations in "
            "ord_apd90_design.csv"
        ),
        "apd90_control_ms": control,
        "conductance_factors": CIPA_V1_FACTORS,
        "prepace_beats": prepace,
        "steady_state": state,
        "beats": beats,
        "cycle_ms": CYCLE_MS,
        "seed": args.seed,
        "layers": layers,
        "fitted": fitted,
    }
    MODEL.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(fitted))


if __name__ == "__main__":
    main()
