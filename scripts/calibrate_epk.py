"""Calibrate the block→ECG map Δ(block) and the drugs' effect-compartment delays on the FDA study ECGRDVQ.

    python scripts/calibrate_epk.py [--data ../shared/data] [--subjects 1001,1002,...]

A mean virtual subject (baseline RR, PR, QRS, J-Tpeak and Tpeak-Tend = the study's mean pre-dose
values) receives each study drug at its study dose: PK from the drug library → free effect-site
concentration (rate ke0 per drug) → Hill block (CiPA IC50s), averaged over a population drawn with the
library's PK variability, at the population's mean drug sensitivity → Δ(block) → ECGSYN beat →
``measure`` (``vtrial.studies.epk_fit``: the simulated population's mean, which is what a trial reports). The map's coefficients and the four ke0 are fitted jointly by bounded least squares
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
from pathlib import Path

import numpy as np

from vtrial.sources.study_table import load_clinical_table
from vtrial.studies.epk_fit import DRUGS, fit

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--subjects", type=str, default=None)
    args = ap.parse_args()
    subjects = [int(s) for s in args.subjects.split(",")] if args.subjects else None
    table, _ = load_clinical_table(args.data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    result = fit(table, subjects, verbose=1)
    coef, ke0, obs, base = result.coef, result.ke0_per_h, result.data.obs, result.data.base
    pred = {d: result.predict(d) for d in DRUGS}
    peak_err = {d: float(pred[d]["d_qtcf_ms"].max() - obs[d]["qtcf_ms"].max()) for d in DRUGS}
    rmse = {d: float(np.sqrt(np.mean((pred[d]["d_qtcf_ms"] - obs[d]["qtcf_ms"]) ** 2))) for d in DRUGS}
    fitted = {
        "data": "FDA study ECGRDVQ (SCR-002), mean placebo-corrected changes of "
        + ("all 22 subjects" if subjects is None else f"subjects {subjects}"),
        "method": "scripts/calibrate_epk.py: bounded least squares (scipy.optimize.least_squares) of a mean "
        "virtual subject's measured ΔΔQTcF, ΔΔJ-Tpeak_c, ΔΔTpeak-Tend, ΔΔPR, ΔΔQRS time courses, "
        "block averaged over 64 PK draws, mean drug sensitivity",
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
