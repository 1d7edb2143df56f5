"""Concentration–QTc: the regulatory linear mixed-effects model (Garnett et al., J Pharmacokinet
Pharmacodyn 2018) of ΔQTcF on the free plasma concentration, fitted with statsmodels' MixedLM.

    ΔQTcF_ij = (θ0 + η0,i) + (θ1 + η1,i)·C_ij + θ2·TRT_ij + θ3,time(j) + θ4·(QTcF_base,i − mean) + ε_ij

with subject random effects η (intercept and slope; the slope's is dropped, and said so, when the fit does
not converge), TRT = 1 on the active drug, time as a category. Data: each patient's expected ΔQTcF over
the S samples at every post-dose time, on the drug's arms and on placebo. The predicted placebo-corrected
effect at concentration C is ΔΔQTcF(C) = θ2 + θ1·C, reported at the geometric mean over patients of
each patient's highest concentration (Cmax) with its two-sided 90% CI from the fixed effects' covariance.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
from scipy import stats


def fit_mixed(formula: str, data, groups, slope: str = "c"):
    """statsmodels MixedLM with subject random intercept and ``slope``, falling back to a random
    intercept when that fit fails, does not converge or warns of a singular or unconverged fit.
    Returns (result or None, "~c" or "~1", the messages met on the way)."""
    import statsmodels.formula.api as smf

    caught = []
    for re_formula in (f"~{slope}", "~1"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                fit = smf.mixedlm(formula, data, groups=groups, re_formula=re_formula).fit(reml=True)
            except (np.linalg.LinAlgError, ValueError) as exc:
                caught.append(f"{re_formula}: {exc}")
                continue
        msgs = [
            str(x.message) for x in w if "converge" in str(x.message).lower() or "singular" in str(x.message).lower()
        ]
        if fit.converged and not (re_formula != "~1" and msgs):
            return fit, re_formula, caught + msgs
        caught += [f"{re_formula}: {m}" for m in msgs] or [f"{re_formula}: did not converge"]
    return None, None, caught


def fit_cqtc(data: pl.DataFrame) -> dict:
    """``data``: rows with patient, time_idx, conc_free_nM, dqtcf_ms_mean, qtcf_ms_base and trt (0/1).

    Returns slope (ms/nM) with 90% CI, the treatment effect, the geometric-mean Cmax (nM) and the
    predicted ΔΔQTcF there with its 90% CI, n, the random-effects structure used and any fit warnings."""
    d = data.drop_nulls(["conc_free_nM", "dqtcf_ms_mean", "qtcf_ms_base"]).to_pandas()
    if len(d) < 10 or d["conc_free_nM"].max() <= 0:
        return {"status": "too few observations with drug", "n_obs": len(d)}
    active = data.filter(pl.col("trt") == 1).group_by("patient").agg(pl.col("conc_free_nM").max())
    cmax = active["conc_free_nM"].to_numpy()
    cmax = cmax[cmax > 0]
    gm_cmax = float(np.exp(np.mean(np.log(cmax))))
    d["c"] = d["conc_free_nM"] / gm_cmax  # conditioning: concentrations in units of the GM Cmax
    d["base_c"] = d["qtcf_ms_base"] - d["qtcf_ms_base"].mean()
    d["time"] = d["time_idx"].astype(str)
    has_placebo = bool((d["trt"] == 0).any())
    formula = "dqtcf_ms_mean ~ c + C(time) + base_c" + (" + trt" if has_placebo else "")
    result, random, caught = fit_mixed(formula, d, d["patient"])
    if result is None:
        return {"status": "fit failed: " + "; ".join(caught), "n_obs": len(d)}
    names = list(result.fe_params.index)
    cov = result.cov_params().loc[names, names].to_numpy()
    beta = result.fe_params.to_numpy()
    z = stats.norm.ppf(0.95)
    i_c = names.index("c")
    slope, slope_se = beta[i_c] / gm_cmax, np.sqrt(cov[i_c, i_c]) / gm_cmax
    lin = np.zeros(len(names))
    lin[i_c] = 1.0  # ΔΔQTcF at c = 1 (the GM Cmax) = θ1 + θ2
    if has_placebo:
        lin[names.index("trt")] = 1.0
    pred = float(lin @ beta)
    pred_se = float(np.sqrt(lin @ cov @ lin))
    return {
        "status": "ok",
        "n_obs": len(d),
        "n_patients": int(d["patient"].nunique()),
        "random_effects": "intercept + slope" if random == "~c" else "intercept",
        "slope_ms_per_nM": float(slope),
        "slope_ci90_lo": float(slope - z * slope_se),
        "slope_ci90_hi": float(slope + z * slope_se),
        "trt_effect_ms": float(beta[names.index("trt")]) if has_placebo else None,
        "gm_cmax_free_nM": gm_cmax,
        "ddqtcf_at_gm_cmax_ms": pred,
        "ddqtcf_at_gm_cmax_ci90_lo": pred - z * pred_se,
        "ddqtcf_at_gm_cmax_ci90_hi": pred + z * pred_se,
        "warnings": "; ".join(caught) or None,
    }


def cqtc_by_drug(patients: pl.DataFrame, arm_drugs: dict[int, str | None], placebo_idx: int | None) -> pl.DataFrame:
    """One C-QTc fit per drug, pooling the arms that give that drug alone (``arm_drugs``: arm_idx → the
    drug's name, None for placebo and combinations) with the placebo arm; post-dose times only."""
    rows = []
    post = patients.filter(pl.col("time_idx") > 0)
    for drug in sorted({d for d in arm_drugs.values() if d}):
        arms = [a for a, d in arm_drugs.items() if d == drug]
        sel = post.filter(pl.col("arm_idx").is_in(arms)).with_columns(pl.lit(1).alias("trt"))
        if placebo_idx is not None:
            plc = post.filter(pl.col("arm_idx") == placebo_idx).with_columns(pl.lit(0).alias("trt"))
            # each arm is its own period: a patient's placebo period is shared by the drug's arms
            sel = pl.concat([sel, plc])
        cols = ["patient", "arm_idx", "time_idx", "conc_free_nM", "dqtcf_ms_mean", "qtcf_ms_base", "trt"]
        res = fit_cqtc(sel.select(cols))
        rows.append({"drug": drug, "arms": ",".join(map(str, arms)), **res})
    schema_order = [
        "drug",
        "arms",
        "status",
        "n_obs",
        "n_patients",
        "random_effects",
        "slope_ms_per_nM",
        "slope_ci90_lo",
        "slope_ci90_hi",
        "trt_effect_ms",
        "gm_cmax_free_nM",
        "ddqtcf_at_gm_cmax_ms",
        "ddqtcf_at_gm_cmax_ci90_lo",
        "ddqtcf_at_gm_cmax_ci90_hi",
        "warnings",
    ]
    full = [{k: r.get(k) for k in schema_order} for r in rows]
    schema = {
        k: (
            pl.Utf8
            if k in ("drug", "arms", "status", "random_effects", "warnings")
            else pl.Int64
            if k in ("n_obs", "n_patients")
            else pl.Float64
        )
        for k in schema_order
    }
    return pl.DataFrame(full, schema=schema)
