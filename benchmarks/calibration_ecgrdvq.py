"""Check the shipped calibration of Δ(block) against the FDA study ECGRDVQ (no fitting here).

    python benchmarks/calibration_ecgrdvq.py [--data ../shared/data]

A mean virtual subject (the study's mean pre-dose intervals) takes each drug at its study dose with the
drug library's PK, its variability (block averaged over the simulated population, as the calibration
does: ``epk_fit``) and ke0, the population's mean drug sensitivity and the shipped map coefficients; its
measured ΔQTcF time course is compared
with the observed mean ΔΔQTcF (``ddQTcF_by_treatment_timepoint.csv``), and its ΔJ-Tpeak_c with the
study's finding (dofetilide and quinidine prolong J-Tpeak_c; ranolazine and verapamil do not, or far
less). Last line: JSON with ``peak_ddqtcf_error_ms`` (predicted peak minus observed peak) per drug.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from vtrial.physiology.epk import default_coefficients
from vtrial.sources.population import real_subject_sensitivity_cv
from vtrial.sources.study_table import load_clinical_table, placebo_corrected
from vtrial.spec.drugs import get_drug
from vtrial.studies.epk_calibration import interval_changes, mean_sensitivity, mean_subject, population_block

DRUGS = {
    "dofetilide": "Dofetilide",
    "quinidine": "Quinidine Sulph",
    "ranolazine": "Ranolazine",
    "verapamil": "Verapamil HCL",
}
TARGET_MS = 10.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    table = args.data / "ecgrdvq" / "SCR-002.Clinical.Data.csv"
    summary = args.data / "ecgrdvq" / "ddQTcF_by_treatment_timepoint.csv"
    if not table.is_file() or not summary.is_file():
        print(json.dumps({"skipped": f"ECGRDVQ data not found under {args.data / 'ecgrdvq'}"}))
        return 0
    df, _ = load_clinical_table(table)
    waves0, _ = mean_subject(df)
    ref = pl.read_csv(summary)
    dd = placebo_corrected(df, columns=("jtpeakc_ms", "qtcf_ms"))
    coef = default_coefficients()
    sensitivity = mean_sensitivity(real_subject_sensitivity_cv())
    peak_err, rmse, jt = {}, {}, {}
    print(
        f"{'drug':<11} {'dose':>8} {'obs peak':>9} {'pred peak':>9} {'error':>7} {'RMSE':>6} {'obs ΔΔJTpc':>11} {'pred ΔJTpc':>11}"
    )
    for drug, label in DRUGS.items():
        obs = ref.filter((pl.col("treatment") == label) & (pl.col("tpt_h") > 0)).sort("tpt_h")
        times = obs["tpt_h"].to_numpy()
        dose = float(df.filter(pl.col("treatment") == drug)["dose_mg"][0])
        pred = interval_changes(waves0, population_block(get_drug(drug), dose, times), coef, sensitivity=sensitivity)
        observed = obs["mean_ddQTcF_ms"].to_numpy()
        peak_err[drug] = round(float(pred["d_qtcf_ms"].max() - observed.max()), 2)
        rmse[drug] = round(float(np.sqrt(np.mean((pred["d_qtcf_ms"] - observed) ** 2))), 2)
        jt_obs = float(dd.filter((pl.col("treatment") == drug) & (pl.col("time_h") > 0))["dd_jtpeakc_ms"].max())
        jt[drug] = {
            "observed_peak_ms": round(jt_obs, 2),
            "predicted_peak_ms": round(float(pred["d_jtpeakc_ms"].max()), 2),
        }
        print(
            f"{drug:<11} {dose:>8g} {observed.max():>9.1f} {pred['d_qtcf_ms'].max():>9.1f} {peak_err[drug]:>7.1f} "
            f"{rmse[drug]:>6.1f} {jt_obs:>11.1f} {pred['d_jtpeakc_ms'].max():>11.1f}"
        )
    p = {d: v["predicted_peak_ms"] for d, v in jt.items()}
    finding = bool(min(p["dofetilide"], p["quinidine"]) > 2 * max(p["ranolazine"], p["verapamil"], 1.0))
    result = {
        "peak_ddqtcf_error_ms": peak_err,
        "rmse_ddqtcf_ms": rmse,
        "djtpeakc_peak_ms": jt,
        "jtpeak_finding_reproduced": finding,
        "target_abs_peak_error_ms": TARGET_MS,
        "all_within_target": bool(all(abs(v) <= TARGET_MS for v in peak_err.values())),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
