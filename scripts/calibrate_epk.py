"""Calibrate the block→ECG map Δ(block) and the drugs' effect-compartment delays on the FDA study ECGRDVQ.

    python scripts/calibrate_epk.py [--data ../shared/data] [--subjects 1001,1002,...]

A mean virtual subject (baseline RR, PR, QRS, J-Tpeak and Tpeak-Tend = the study's mean pre-dose
values) receives each study drug at its study dose: typical-value PK from the drug library → free
effect-site concentration (rate ke0 per drug) → Hill block (CiPA IC50s) → Δ(block) → ECGSYN beat →
``measure``. The map's coefficients and the four ke0 are fitted jointly by bounded least squares
(scipy) to the observed mean placebo-corrected change from baseline over the 15 post-dose times:
ΔΔQTcF (weight 1), ΔΔJ-Tpeak_c and ΔΔTpeak-Tend (0.7), ΔΔPR and ΔΔQRS (0.5), plus each drug's peak
ΔΔQTcF error (weight √30, twice its whole time course). The T-wave flattening φ
is fixed (not identifiable from intervals). Writes vtrial/data/epk_coefficients.json (with residuals)
and the ke0 values into vtrial/data/drugs.json. ``--subjects`` restricts the fit to a subject subset
(used for out-of-sample checks); by default all 22 subjects.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from vtrial.calibration import effect_site_block, interval_changes, mean_subject
from vtrial.drugs import get_drug
from vtrial.ecgrdvq import load_clinical_table, placebo_corrected
from vtrial.physiology.epk import EpkCoefficients

ROOT = Path(__file__).resolve().parents[1]
DRUGS = ("dofetilide", "quinidine", "ranolazine", "verapamil")
WEIGHTS = {"qtcf_ms": 1.0, "jtpeakc_ms": 0.7, "tpte_ms": 0.7, "pr_ms": 0.5, "qrs_ms": 0.5}
T_FLATTENING = 0.3
PEAK_WEIGHT = math.sqrt(30.0)
# name, lower, upper, start
PARAMS = [
    ("jt_hERG", 0.0, 600.0, 120.0), ("jt_ICaL", -60.0, 0.0, -30.0), ("jt_INaL", -60.0, 0.0, -30.0),
    ("jt_IKs", 0.0, 600.0, 20.0), ("tp_hERG", 0.0, 600.0, 120.0), ("log_kappa", math.log(0.03), math.log(100.0), 0.0),
    ("att_ICaL", 0.0, 20.0, 1.0), ("att_INaL", 0.0, 20.0, 1.0), ("qrs_INa", 0.0, 1.0, 0.5), ("pr_INa", 0.0, 600.0, 50.0), ("pr_ICaL", 0.0, 2000.0, 200.0),
] + [(f"log_ke0_{d}", math.log(0.05), math.log(50.0), 0.0) for d in DRUGS]


def observed(data_dir: Path, subjects=None):
    df, _ = load_clinical_table(data_dir / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    if subjects is not None:
        df = df.filter(pl.col("subject").is_in(subjects))
    waves0, base = mean_subject(df)
    dd = placebo_corrected(df, columns=tuple(WEIGHTS) + ("rr_ms",))
    obs = {}
    for d in DRUGS:
        sub = dd.filter((pl.col("treatment") == d) & (pl.col("time_h") > 0)).sort("time_h")
        obs[d] = {"time_h": sub["time_h"].to_numpy(), **{c: sub[f"dd_{c}"].to_numpy() for c in WEIGHTS}}
    doses = {d: float(df.filter(pl.col("treatment") == d)["dose_mg"][0]) for d in DRUGS}
    return base, waves0, obs, doses


def coefficients(x) -> tuple[EpkCoefficients, dict[str, float]]:
    p = dict(zip([n for n, *_ in PARAMS], x))
    coef = EpkCoefficients(
        jtpeak_ms={"hERG": p["jt_hERG"], "ICaL": p["jt_ICaL"], "INaL": p["jt_INaL"], "IKs": p["jt_IKs"]},
        tpte_ms={"hERG": p["tp_hERG"]},
        qrs_fraction={"INa": p["qrs_INa"]},
        attenuation={"ICaL": p["att_ICaL"], "INaL": p["att_INaL"]},
        pr_ms={"INa": p["pr_INa"], "ICaL": p["pr_ICaL"]},
        herg_saturation=math.exp(p["log_kappa"]),
        t_flattening=T_FLATTENING,
    )
    return coef, {d: math.exp(p[f"log_ke0_{d}"]) for d in DRUGS}


def predict(x, waves0, obs, doses):
    coef, ke0 = coefficients(x)
    out = {}
    for d in DRUGS:
        _, block = effect_site_block(get_drug(d), doses[d], obs[d]["time_h"], ke0[d])
        out[d] = interval_changes(waves0, block, coef)
    return out


def residuals(x, waves0, obs, doses):
    pred = predict(x, waves0, obs, doses)
    res = []
    for d in DRUGS:
        for c, w in WEIGHTS.items():
            res.append(w * (pred[d][f"d_{c}"] - obs[d][c]))
        # the peak ΔΔQTcF is what safety decisions read: weigh its error like three time points
        res.append(np.atleast_1d(PEAK_WEIGHT * (pred[d]["d_qtcf_ms"].max() - obs[d]["qtcf_ms"].max())))
    r = np.concatenate(res)
    return np.where(np.isfinite(r), r, 1e3)


def fit(data_dir: Path, subjects=None, verbose=0):
    base, waves0, obs, doses = observed(data_dir, subjects)
    lo = np.array([p[1] for p in PARAMS])
    hi = np.array([p[2] for p in PARAMS])
    x0 = np.array([p[3] for p in PARAMS])
    sol = least_squares(residuals, x0, bounds=(lo, hi), args=(waves0, obs, doses), diff_step=1e-2, xtol=1e-10, ftol=1e-10,
                        x_scale=np.maximum(np.abs(x0), 1.0), verbose=verbose, max_nfev=400)
    return sol, base, waves0, obs, doses


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--subjects", type=str, default=None)
    args = ap.parse_args()
    subjects = [int(s) for s in args.subjects.split(",")] if args.subjects else None
    sol, base, waves0, obs, doses = fit(args.data, subjects, verbose=1)
    coef, ke0 = coefficients(sol.x)
    pred = predict(sol.x, waves0, obs, doses)
    peak_err = {d: float(pred[d]["d_qtcf_ms"].max() - obs[d]["qtcf_ms"].max()) for d in DRUGS}
    rmse = {d: float(np.sqrt(np.mean((pred[d]["d_qtcf_ms"] - obs[d]["qtcf_ms"]) ** 2))) for d in DRUGS}
    fitted = {
        "data": "FDA study ECGRDVQ (SCR-002), mean placebo-corrected changes of "
                + ("all 22 subjects" if subjects is None else f"subjects {subjects}"),
        "method": "scripts/calibrate_epk.py: bounded least squares (scipy.optimize.least_squares) of a mean "
                  "virtual subject's measured ΔΔQTcF, ΔΔJ-Tpeak_c, ΔΔTpeak-Tend, ΔΔPR, ΔΔQRS time courses",
        "mean_subject_baseline_ms": {k: round(v, 2) for k, v in base.items()},
        "t_flattening": "fixed, not identifiable from intervals",
        "ke0_per_h": {d: round(v, 4) for d, v in ke0.items()},
        "peak_ddqtcf_error_ms": {d: round(v, 2) for d, v in peak_err.items()},
        "rmse_ddqtcf_ms": {d: round(v, 2) for d, v in rmse.items()},
    }
    coef_d = coef.to_dict()
    for key in ("jtpeak_ms", "tpte_ms", "qrs_fraction", "pr_ms", "attenuation"):
        coef_d[key] = {k: round(float(v), 4) for k, v in coef_d[key].items()}
    coef_d["herg_saturation"] = round(coef_d["herg_saturation"], 5)
    coef_d["fitted"] = fitted
    (ROOT / "vtrial" / "data" / "epk_coefficients.json").write_text(json.dumps(coef_d, indent=1) + "\n")
    lib_path = ROOT / "vtrial" / "data" / "drugs.json"
    lib = json.loads(lib_path.read_text())
    for d, v in ke0.items():
        lib["drugs"][d]["pk"]["ke0_per_h"] = round(v, 4)
    lib_path.write_text(json.dumps(lib, indent=1, allow_nan=False) + "\n")
    print(json.dumps(coef_d, indent=1))


if __name__ == "__main__":
    main()
