"""How far the block→ECG map alone can take the CiPA TdP classification: a fast check, no trial run.

    python scripts/tdp_map_check.py [--data ../shared/data] [--ke0-min 0.05] [--inward-bound -60]
                                    [--herg-model static|dynamic]

The FDA study's mean virtual subject (``calibration.mean_subject``) takes each of the 12 CiPA training
drugs at 1, 2, 4 and 10× its free Cmax (Hill block, or with ``--herg-model dynamic`` the paced dynamic
hERG model for hERG, ``vtrial.physiology.herg``); the map Δ(block)
gives ΔΔQTcF and ΔΔJ-Tpeak_c, and ``vtrial.stats.tdp`` fits its classifier and leave-one-drug-out on them —
the same features a cipa_training run feeds it, without sampling noise or the world model. By default
the shipped coefficients; with ``--ke0-min`` or ``--inward-bound`` the map is first recalibrated on
ECGRDVQ (``epk_fit.fit``, ≈ 2–3 min) with the drugs' effect delays bounded below by ``ke0-min`` /h
and the ICaL/INaL J-Tpeak coefficients bounded below by ``inward-bound`` ms. Prints the feature table
and, last line, JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from vtrial.physiology.epk import default_coefficients
from vtrial.sources.study_table import load_clinical_table
from vtrial.spec.drugs import HERG_MODELS, get_drug, known_drugs
from vtrial.stats import tdp
from vtrial.studies import epk_fit
from vtrial.studies.epk_calibration import interval_changes, mean_subject

MULTIPLES = (1.0, 2.0, 4.0, 10.0)
ROOT = Path(__file__).resolve().parents[1]


def cipa_drugs() -> list[str]:
    """The library's drugs with a known TdP category: the 12 CiPA training drugs."""
    return [d for d in known_drugs() if get_drug(d).tdp_category is not None]


def features(coef, waves0, herg_model: str = "static") -> pl.DataFrame:
    rows = []
    for d in cipa_drugs():
        drug = get_drug(d, herg_model)
        block = drug.block(np.array(MULTIPLES) * drug.free_cmax_nM)
        ch = interval_changes(waves0, block, coef)
        rows += [
            {"drug": d, "multiple": m, "ddqtcf_ms": float(q), "ddjtpeakc_ms": float(j), "herg_block": float(b)}
            for m, q, j, b in zip(MULTIPLES, ch["d_qtcf_ms"], ch["d_jtpeakc_ms"], block[:, 0])
        ]
    return pl.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--ke0-min", type=float, default=None)
    ap.add_argument("--inward-bound", type=float, default=None)
    ap.add_argument(
        "--herg-model",
        choices=HERG_MODELS,
        default="static",
        help="hERG block of the CiPA drugs: Hill (static) or the paced dynamic hERG model",
    )
    args = ap.parse_args()
    table, _ = load_clinical_table(args.data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    waves0, _ = mean_subject(table)
    coef, refit = default_coefficients(), None
    if args.ke0_min is not None or args.inward_bound is not None:
        if args.ke0_min is not None:
            epk_fit.KE0_BOUNDS = (math.log(args.ke0_min), epk_fit.KE0_BOUNDS[1])
        if args.inward_bound is not None:
            epk_fit.MAP_PARAMS = [
                (n, args.inward_bound if n in ("jt_ICaL", "jt_INaL") else lo, hi, x0)
                for n, lo, hi, x0 in epk_fit.MAP_PARAMS
            ]
        fit = epk_fit.fit(table)
        coef = fit.coef
        refit = {
            "ke0_per_h": {k: round(v, 3) for k, v in fit.ke0_per_h.items()},
            "peak_ddqtcf_error_ms": {
                d: round(float(fit.predict(d)["d_qtcf_ms"].max() - fit.data.obs[d]["qtcf_ms"].max()), 1)
                for d in epk_fit.DRUGS
            },
        }
    f = features(coef, waves0, args.herg_model)
    drugs = cipa_drugs()
    cats = {d: get_drug(d).tdp_category for d in drugs}
    clf = tdp.fit_classifier(f, cats)
    lodo = tdp.leave_one_drug_out(f, cats)
    wide = f.pivot(on="multiple", index="drug", values="ddqtcf_ms").with_columns(
        pl.Series("herg_block_1x", f.filter(pl.col("multiple") == 1.0)["herg_block"]),
        pl.Series("category", [cats[d] for d in drugs]),
        pl.Series("lodo", [lodo[d] for d in drugs]),
    )
    with pl.Config(tbl_rows=20, tbl_cols=10):
        print("ΔΔQTcF (ms) at multiples of free Cmax\n", wide)
    print(
        json.dumps(
            {
                "classifier": {
                    "feature": clf.feature,
                    "multiple": clf.multiple,
                    "low_ms": round(clf.low_ms, 1),
                    "high_ms": round(clf.high_ms, 1),
                    "train_accuracy": round(clf.train_accuracy, 3),
                },
                "lodo_correct": int(sum(lodo[d] == cats[d] for d in drugs)),
                "drugs": len(drugs),
                "refit": refit,
            }
        )
    )


if __name__ == "__main__":
    main()
