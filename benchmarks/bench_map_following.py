"""Does the world model follow the Δ(block) map of its prior beat? ΔQTcF of its samples against the map's.

    python benchmarks/bench_map_following.py [--checkpoint vtrial/data/worldmodel.pt] [--patients 24]

New synthetic patients (``healthy_adults``, seed 31, drug sensitivity 1) take five drugs — the four of
the FDA study and the held-out bepridil — at 1× and 4× their free Cmax, under four maps: the shipped
one, the shipped one with its hERG terms doubled, the O'Hara–Rudy cell map with gains 0.6/0.6, and the
shipped one with convex hERG response and relative attenuation (the family the out-of-fold fits use, with
the shipped coefficients). For each (map, drug, multiple): the map's own ΔQTcF (its noise-free prior
beat against the drug-free one, measured), the ΔQTcF of the corpus's beat for that map (the prior beat
plus the corpus's richer morphology, ``corpus.rich_effects``: what the model was trained to draw) and the
world model's (mean of its samples minus the mean of its drug-free samples of the same patients).
Prints the rows; the last line, JSON: slope, intercept and RMSE of the world model's ΔQTcF against the
corpus beat's and against the map's, and ``map_change_slope``, how far the world model moves per ms
the map moves when only the map changes (1: it follows the map; 0: it ignores it).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from vtrial.model.checkpoint import DEFAULT_CHECKPOINT
from vtrial.model.corpus import FS_HZ, WINDOW_S, rich_effects
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import apply_block, default_coefficients
from vtrial.sampling.worldmodel import WorldModelSampler
from vtrial.signal.measure import measure
from vtrial.sources.population import builtin_population, load_population, sample_cohort
from vtrial.spec.drugs import get_drug

DRUGS = ("dofetilide", "quinidine", "ranolazine", "verapamil", "bepridil")
MULTIPLES = (1.0, 4.0)


def maps() -> dict:
    c = default_coefficients()
    return {
        "shipped": c,
        "hERG x2": replace(
            c,
            jtpeak_ms={**c.jtpeak_ms, "hERG": 2 * c.jtpeak_ms["hERG"]},
            tpte_ms={**c.tpte_ms, "hERG": 2 * c.tpte_ms["hERG"]},
        ),
        "ORd 0.6/0.6": replace(c, ord_jtpeak_gain=0.6, ord_tpte_gain=0.6),
        "convex, relative": replace(c, herg_saturation=-1.5, relative_attenuation=True),
    }


def qtcf_ms(beats: torch.Tensor, rr_ms: np.ndarray) -> np.ndarray:
    m = measure(beats, FS_HZ, rr_ms, window_start_s=WINDOW_S[0])
    return np.where(m["valid"], m["qtcf_ms"], np.nan)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=31)
    args = ap.parse_args()
    n = args.patients
    cohort = sample_cohort(load_population(builtin_population("healthy_adults")), n, args.seed)
    w = cohort.waves
    rr_ms = w.rr_s.numpy() * 1000.0
    base_units = {
        "patient": np.arange(n),
        "arm_idx": np.zeros(n, int),
        "time_idx": np.zeros(n, int),
        "time_h": np.full(n, 2.0),
        "sensitivity": np.ones(n),
        "female": cohort.sex == "F",
        "age_y": cohort.age_y,
        "weight_kg": cohort.weight_kg,
        "rr_s": w.rr_s.numpy(),
        "t_ms": w.t_ms.numpy(),
        "sigma_ms": w.sigma_ms.numpy(),
        "height_mv": w.height_mv.numpy(),
    }
    free = ecgsyn_beat(w.to_ecgsyn(), FS_HZ, WINDOW_S).float()
    free_q = qtcf_ms(free, rr_ms)
    free_rich_q = qtcf_ms(free + torch.as_tensor(rich_effects(w, np.zeros((n, 7))), dtype=torch.float32), rr_ms)
    rows = []
    for name, coef in maps().items():
        smp = WorldModelSampler(args.samples, checkpoint=args.checkpoint, coef=coef)
        placebo = {**base_units, "block": np.zeros((n, 7)), "conc_free_nM": np.zeros(n)}
        wm_free = np.nanmean(smp.sample(placebo, args.seed)["qtcf_ms"].reshape(n, -1), axis=1)
        for d in DRUGS:
            for k in MULTIPLES:
                drug = get_drug(d)
                conc = np.full(n, k * drug.free_cmax_nM)
                block = np.repeat(drug.block(conc[:1]), n, axis=0)
                post = apply_block(w, block, coef)
                prior = ecgsyn_beat(post.to_ecgsyn(), FS_HZ, WINDOW_S).float()
                map_d = float(np.nanmean(qtcf_ms(prior, rr_ms) - free_q))
                rich = prior + torch.as_tensor(rich_effects(post, block), dtype=torch.float32)
                corpus_d = float(np.nanmean(qtcf_ms(rich, rr_ms) - free_rich_q))
                r = smp.sample({**base_units, "block": block, "conc_free_nM": conc}, args.seed)
                q = np.where(r["valid"], r["qtcf_ms"], np.nan).reshape(n, -1)
                wm_d = float(np.nanmean(np.nanmean(q, axis=1) - wm_free))
                rows.append(
                    {
                        "map": name,
                        "drug": d,
                        "multiple": k,
                        "map_dqtcf_ms": round(map_d, 1),
                        "corpus_dqtcf_ms": round(corpus_d, 1),
                        "worldmodel_dqtcf_ms": round(wm_d, 1),
                    }
                )
                print(rows[-1], flush=True)
    y = np.array([r["worldmodel_dqtcf_ms"] for r in rows])
    fits = {}
    for ref in ("corpus", "map"):
        x = np.array([r[f"{ref}_dqtcf_ms"] for r in rows])
        slope, intercept = np.polyfit(x, y, 1)
        fits[f"vs_{ref}"] = {
            "slope": round(float(slope), 3),
            "intercept_ms": round(float(intercept), 2),
            "rmse_ms": round(float(np.sqrt(np.mean((y - x) ** 2))), 2),
        }
    # within one drug and multiple, how the world model moves when only the map changes
    shipped = {(r["drug"], r["multiple"]): r for r in rows if r["map"] == "shipped"}
    dx = np.array(
        [r["map_dqtcf_ms"] - shipped[(r["drug"], r["multiple"])]["map_dqtcf_ms"] for r in rows if r["map"] != "shipped"]
    )
    dy = np.array(
        [
            r["worldmodel_dqtcf_ms"] - shipped[(r["drug"], r["multiple"])]["worldmodel_dqtcf_ms"]
            for r in rows
            if r["map"] != "shipped"
        ]
    )
    change_slope = float(np.sum(dx * dy) / np.sum(dx * dx))
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "patients": n,
                "samples": args.samples,
                **fits,
                "map_change_slope": round(change_slope, 3),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
