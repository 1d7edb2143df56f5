"""Risk with its uncertainty: per sample → per patient → per arm, and arm comparisons.

Pure computation on polars frames (no I/O). Definitions (ICH E14; docs/science.md, "Risk and uncertainty"):

- Δx: a sample's interval minus the mean of the same patient's valid pre-dose samples (the first time
  point) in the same arm — each arm is a period of a crossover in which every virtual patient takes part.
- ΔΔx: a patient's expected Δx in an arm minus their expected Δx on placebo at the same time; per arm and
  time the mean over patients with a paired two-sided 90% t interval. ICH E14: the study is negative when
  the upper bound of ΔΔQTcF's 90% CI stays below 10 ms at every post-dose time.
- per patient: the expected value over the S samples and its variability (SD, 5/50/95% quantiles), and
  the probability of each categorical endpoint (share of valid samples above the threshold).
- per arm: the distribution over patients: mean with a percentile-bootstrap 90% CI (patients resampled)
  and the variance split into within-patient (sampling) and between-patient parts.
- the risk R of an arm is ΔΔQTcF (ΔQTcF without a placebo arm) at the arm's peak time; μ_R is its mean
  over patients, σ_R its total SD over patients and samples (√(between² + within²)), and the risk-averse
  score S(a) = μ_R(a) + λ·σ_R(a) ranks arms (rank 1 = safest).
- arm comparisons (patients are paired across arms): μ_R(A) − μ_R(B) with a paired-bootstrap 90% CI,
  P(A safer than B) = bootstrap probability that μ_R(A) < μ_R(B), and the share of patients whose
  expected risk is lower on A.

Nothing is invented for missing data: an arm with no valid sample gets null risk numbers and a warning;
without a placebo arm the placebo-corrected columns are null and ``dd_absent_reason`` says why.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

DELTAS = ("qtcf_ms", "jtpeakc_ms", "tpte_ms", "qrs_ms", "pr_ms", "hr_bpm")
CATEGORICAL = {
    "p_qtcf_gt_450": ("qtcf_ms", 450.0),
    "p_qtcf_gt_480": ("qtcf_ms", 480.0),
    "p_qtcf_gt_500": ("qtcf_ms", 500.0),
    "p_dqtcf_gt_30": ("dqtcf_ms", 30.0),
    "p_dqtcf_gt_60": ("dqtcf_ms", 60.0),
}
E14_THRESHOLD_MS = 10.0
NO_PLACEBO = "no placebo arm in the protocol"
IS_PLACEBO = "placebo arm (reference)"


def patient_table(samples: pl.LazyFrame) -> pl.DataFrame:
    """Per arm × patient × time: expected values over the S samples (valid ones only), the variability of
    QTcF and ΔQTcF, and endpoint probabilities."""
    s = samples
    base = (
        s.filter((pl.col("time_idx") == 0) & pl.col("valid"))
        .group_by("arm_idx", "patient")
        .agg(*[pl.col(c).mean().alias(f"{c}_base") for c in DELTAS])
    )
    s = s.join(base, on=["arm_idx", "patient"], how="left").with_columns(
        *[(pl.col(c) - pl.col(f"{c}_base")).alias(f"d{c}") for c in DELTAS]
    )
    v = pl.col("valid")
    aggs = [
        pl.len().alias("n_samples"),
        v.sum().alias("n_valid"),
        pl.col("conc_free_nM").mean(),
        pl.col("qtcf_ms_base").first(),
    ]
    for c in ("qtcf_ms", "dqtcf_ms"):
        col = pl.col(c).filter(v)
        aggs += [
            col.mean().alias(f"{c}_mean"),
            col.std().alias(f"{c}_sd"),
            col.quantile(0.05).alias(f"{c}_q05"),
            col.quantile(0.5).alias(f"{c}_q50"),
            col.quantile(0.95).alias(f"{c}_q95"),
        ]
    for c in DELTAS[1:]:
        aggs.append(pl.col(f"d{c}").filter(v).mean().alias(f"d{c}_mean"))
    for c in ("jtpeakc_ms", "tpte_ms"):
        aggs.append(pl.col(c).filter(v).mean().alias(f"{c}_mean"))
    for name, (c, thr) in CATEGORICAL.items():
        aggs.append((pl.col(c).filter(v) > thr).mean().alias(name))
    return (
        s.group_by("arm", "arm_idx", "patient", "time_idx", "time_h")
        .agg(aggs)
        .sort("arm_idx", "patient", "time_idx")
        .collect()
    )


def _ci90(mean, sd, n):
    n = np.asarray(n, float)
    half = np.where(
        n > 1, stats.t.ppf(0.95, np.maximum(n - 1, 1)) * np.asarray(sd, float) / np.sqrt(np.maximum(n, 1)), np.nan
    )
    return np.asarray(mean, float) - half, np.asarray(mean, float) + half


def with_placebo_correction(patients: pl.DataFrame, placebo_idx: int | None) -> pl.DataFrame:
    """Add dd{x} per patient and time (null for the placebo arm itself and without placebo)."""
    cols = [f"d{c}_mean" for c in DELTAS]
    if placebo_idx is None:
        return patients.with_columns(*[pl.lit(None, dtype=pl.Float64).alias("d" + c) for c in cols])
    plc = patients.filter(pl.col("arm_idx") == placebo_idx).select(
        "patient", "time_idx", *[pl.col(c).alias(f"{c}_plc") for c in cols]
    )
    p = patients.join(plc, on=["patient", "time_idx"], how="left")
    is_plc = pl.col("arm_idx") == placebo_idx
    return p.with_columns(
        *[pl.when(is_plc).then(None).otherwise(pl.col(c) - pl.col(f"{c}_plc")).alias("d" + c) for c in cols]
    ).drop([f"{c}_plc" for c in cols])


def bootstrap_mean_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.90):
    """Percentile-bootstrap CI of the mean of ``values`` (NaNs dropped); (nan, nan) with < 2 values."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return np.nan, np.nan
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def arm_table(patients: pl.DataFrame, placebo_idx: int | None, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Per arm × time: Δ and placebo-corrected ΔΔ of every interval with paired 90% CIs; expected
    categorical incidences with bootstrap 90% CIs; ΔQTcF's between/within-patient variance split."""
    p = with_placebo_correction(patients, placebo_idx)
    aggs = [
        pl.col("dqtcf_ms_mean").is_not_null().sum().alias("n_patients"),
        pl.col("n_valid").sum().alias("n_valid_samples"),
        pl.col("n_samples").sum().alias("n_samples"),
        pl.col("conc_free_nM").mean().alias("conc_free_nM_mean"),
        pl.col("qtcf_ms_mean").mean().alias("qtcf_ms"),
        pl.col("dqtcf_ms_mean").std().alias("dqtcf_ms_sd_between"),
        pl.col("dqtcf_ms_sd").pow(2).mean().sqrt().alias("dqtcf_ms_sd_within"),
    ]
    for c in DELTAS:
        d, dd = f"d{c}_mean", f"dd{c}_mean"
        aggs += [
            pl.col(d).mean().alias(f"d{c}"),
            pl.col(d).std().alias(f"d{c}_sd"),
            pl.col(dd).mean().alias(f"dd{c}"),
            pl.col(dd).std().alias(f"dd{c}_sd"),
            pl.col(dd).is_not_null().sum().alias(f"dd{c}_n"),
        ]
    aggs += [pl.col(k).mean().alias(k) for k in CATEGORICAL]
    boot_cols = ("dqtcf_ms_mean", *CATEGORICAL)
    aggs += [pl.col(k).alias(f"{k}__patients") for k in boot_cols]  # per-patient values, for the bootstrap
    a = p.group_by("arm", "arm_idx", "time_idx", "time_h").agg(aggs).sort("arm_idx", "time_idx")
    new = {}
    for c in DELTAS:
        lo, hi = _ci90(a[f"d{c}"].fill_null(np.nan), a[f"d{c}_sd"].fill_null(np.nan), a["n_patients"])
        new[f"d{c}_ci90_lo"], new[f"d{c}_ci90_hi"] = lo, hi
        lo, hi = _ci90(a[f"dd{c}"].fill_null(np.nan), a[f"dd{c}_sd"].fill_null(np.nan), a[f"dd{c}_n"])
        new[f"dd{c}_ci90_lo"], new[f"dd{c}_ci90_hi"] = lo, hi
    rng = np.random.default_rng([seed, 0xB007])
    for k in boot_cols:
        ci = [bootstrap_mean_ci(np.asarray(v.to_list(), float), n_boot, rng) for v in a[f"{k}__patients"]]
        name = "dqtcf_ms" if k == "dqtcf_ms_mean" else k
        new[f"{name}_boot90_lo"] = [c[0] for c in ci]
        new[f"{name}_boot90_hi"] = [c[1] for c in ci]
    a = a.drop([f"{k}__patients" for k in boot_cols])
    a = a.with_columns(*[pl.Series(k, np.asarray(v, float)).fill_nan(None) for k, v in new.items()])
    between, within = (
        a["dqtcf_ms_sd_between"].fill_null(np.nan).to_numpy(),
        a["dqtcf_ms_sd_within"].fill_null(np.nan).to_numpy(),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = within**2 / (within**2 + between**2)
    reason = NO_PLACEBO if placebo_idx is None else None
    return a.with_columns(
        pl.Series("dqtcf_ms_within_fraction", frac).fill_nan(None),
        pl.when(pl.col("arm_idx") == (placebo_idx if placebo_idx is not None else -1))
        .then(pl.lit(IS_PLACEBO))
        .otherwise(pl.lit(reason, dtype=pl.Utf8))
        .alias("dd_absent_reason"),
    )


def risk_column(placebo_idx: int | None) -> str:
    return "ddqtcf_ms" if placebo_idx is not None else "dqtcf_ms"


def peak_times(arms: pl.DataFrame, placebo_idx: int | None) -> dict[int, int]:
    """arm_idx → time_idx of the arm's largest mean risk after the baseline (arms without one left out)."""
    col = risk_column(placebo_idx)
    out = {}
    for (arm_idx,), a in arms.filter(pl.col("time_idx") > 0).group_by("arm_idx", maintain_order=True):
        if arm_idx == placebo_idx or a[col].is_null().all():
            continue
        out[arm_idx] = int(a["time_idx"][int(np.nanargmax(a[col].fill_null(np.nan).to_numpy()))])
    return out


def patient_risk(patients: pl.DataFrame, placebo_idx: int | None, peaks: dict[int, int]) -> pl.DataFrame:
    """Per arm × patient: the risk R at the arm's peak time (expected over samples) and its within-patient SD."""
    p = with_placebo_correction(patients, placebo_idx)
    col = "ddqtcf_ms_mean" if placebo_idx is not None else "dqtcf_ms_mean"
    rows = [p.filter((pl.col("arm_idx") == a) & (pl.col("time_idx") == t)) for a, t in peaks.items()]
    if not rows:
        return pl.DataFrame(
            schema={
                "arm": pl.Utf8,
                "arm_idx": pl.Int32,
                "patient": pl.Int32,
                "risk_ms": pl.Float64,
                "risk_sd_within_ms": pl.Float64,
            }
        )
    return (
        pl.concat(rows)
        .select(
            "arm", "arm_idx", "patient", pl.col(col).alias("risk_ms"), pl.col("dqtcf_ms_sd").alias("risk_sd_within_ms")
        )
        .sort("arm_idx", "patient")
    )


def arm_summary(
    arms: pl.DataFrame,
    patients: pl.DataFrame,
    placebo_idx: int | None,
    aversion: float = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Per arm (placebo included, with null risk): peak ΔΔQTcF and its 90% CI, the ICH E14 verdict,
    μ_R, σ_R (between/within), S = μ_R + λσ_R with its rank, and a warning where numbers are withheld."""
    col = risk_column(placebo_idx)
    peaks = peak_times(arms, placebo_idx)
    pr = patient_risk(patients, placebo_idx, peaks)
    rng = np.random.default_rng([seed, 0x5C0E])
    rows = []
    for name, arm_idx in arms.select("arm", "arm_idx").unique(maintain_order=True).iter_rows():
        a = arms.filter(pl.col("arm_idx") == arm_idx)
        n_valid, n_samples = int(a["n_valid_samples"].sum()), int(a["n_samples"].sum())
        row = {
            "arm": name,
            "arm_idx": arm_idx,
            "endpoint": col,
            "n_samples": n_samples,
            "invalid_samples": n_samples - n_valid,
            "peak_time_idx": None,
            "peak_time_h": None,
            "peak_ms": None,
            "ci90_lo_ms": None,
            "ci90_hi_ms": None,
            "max_ci90_hi_ms": None,
            "e14_negative": None,
            "mu_r_ms": None,
            "mu_r_boot90_lo_ms": None,
            "mu_r_boot90_hi_ms": None,
            "sigma_r_ms": None,
            "sigma_r_between_ms": None,
            "sigma_r_within_ms": None,
            "score_ms": None,
            "warning": None,
        }
        if arm_idx == placebo_idx:
            pass  # the reference: no risk of its own
        elif n_valid == 0:
            row["warning"] = f"arm {name!r}: all {n_samples} samples unmeasurable; no risk number is given"
        elif arm_idx in peaks:
            r = a.filter(pl.col("time_idx") == peaks[arm_idx]).row(0, named=True)
            post = a.filter(pl.col("time_idx") > 0)
            hi = post[f"{col}_ci90_hi"].fill_null(np.nan).to_numpy()
            x = pr.filter(pl.col("arm_idx") == arm_idx)
            risk = x["risk_ms"].fill_null(np.nan).to_numpy()
            within = x["risk_sd_within_ms"].fill_null(np.nan).to_numpy()
            between_sd = float(np.nanstd(risk, ddof=1)) if np.isfinite(risk).sum() > 1 else np.nan
            within_sd = float(np.sqrt(np.nanmean(within**2))) if np.isfinite(within).any() else np.nan
            sigma = float(np.sqrt(np.nansum([between_sd**2, within_sd**2])))
            mu = float(np.nanmean(risk))
            lo, hi_b = bootstrap_mean_ci(risk, n_boot, rng)
            row.update(
                peak_time_idx=peaks[arm_idx],
                peak_time_h=r["time_h"],
                peak_ms=r[col],
                ci90_lo_ms=r[f"{col}_ci90_lo"],
                ci90_hi_ms=r[f"{col}_ci90_hi"],
                mu_r_ms=mu,
                mu_r_boot90_lo_ms=lo,
                mu_r_boot90_hi_ms=hi_b,
                sigma_r_ms=sigma,
                sigma_r_between_ms=between_sd,
                sigma_r_within_ms=within_sd,
                score_ms=mu + aversion * sigma,
            )
            if placebo_idx is not None and np.isfinite(hi).any():
                row["max_ci90_hi_ms"] = float(np.nanmax(hi))
                row["e14_negative"] = bool(np.nanmax(hi) < E14_THRESHOLD_MS)
            if n_valid < n_samples:
                row["warning"] = f"arm {name!r}: {n_samples - n_valid} of {n_samples} samples unmeasurable (left out)"
        rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    rank = df["score_ms"].rank(method="ordinal")
    return df.with_columns(rank.cast(pl.Int32).alias("rank"))


def comparisons(
    patients: pl.DataFrame, summary: pl.DataFrame, placebo_idx: int | None, n_boot: int = 1000, seed: int = 0
) -> pl.DataFrame:
    """Every pair of arms with a risk number (A before B in protocol order): μ_R(A) − μ_R(B) with a
    paired-bootstrap 90% CI, P(A safer than B), the share of patients with lower expected risk on A, S(A),
    S(B) and their ranks."""
    ids = sorted(r["arm_idx"] for r in summary.iter_rows(named=True) if r["mu_r_ms"] is not None)
    pr = patient_risk(patients, placebo_idx, peak_times_from_summary(summary))
    rng = np.random.default_rng([seed, 0xC0A7])
    by = {a: pr.filter(pl.col("arm_idx") == a).sort("patient") for a in ids}
    info = {r["arm_idx"]: r for r in summary.iter_rows(named=True)}
    rows = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            j = by[a].join(by[b], on="patient", suffix="_b").select("risk_ms", "risk_ms_b").drop_nulls()
            ra, rb = j["risk_ms"].to_numpy(), j["risk_ms_b"].to_numpy()
            n = len(ra)
            diff = float(np.mean(ra - rb)) if n else np.nan
            lo = hi = p_safer = np.nan
            if n > 1:
                idx = rng.integers(0, n, (n_boot, n))
                boot = ra[idx].mean(axis=1) - rb[idx].mean(axis=1)
                lo, hi = np.quantile(boot, [0.05, 0.95])
                p_safer = float(np.mean(boot < 0) + 0.5 * np.mean(boot == 0))
            rows.append(
                {
                    "arm_a": info[a]["arm"],
                    "arm_b": info[b]["arm"],
                    "n_patients": n,
                    "mu_r_diff_ms": diff,
                    "diff_ci90_lo_ms": float(lo),
                    "diff_ci90_hi_ms": float(hi),
                    "p_a_safer": p_safer,
                    "p_patient_a_safer": float(np.mean(ra < rb) + 0.5 * np.mean(ra == rb)) if n else np.nan,
                    "score_a_ms": info[a]["score_ms"],
                    "score_b_ms": info[b]["score_ms"],
                    "rank_a": info[a]["rank"],
                    "rank_b": info[b]["rank"],
                }
            )
    schema = {
        "arm_a": pl.Utf8,
        "arm_b": pl.Utf8,
        "n_patients": pl.Int64,
        "mu_r_diff_ms": pl.Float64,
        "diff_ci90_lo_ms": pl.Float64,
        "diff_ci90_hi_ms": pl.Float64,
        "p_a_safer": pl.Float64,
        "p_patient_a_safer": pl.Float64,
        "score_a_ms": pl.Float64,
        "score_b_ms": pl.Float64,
        "rank_a": pl.Int32,
        "rank_b": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col(pl.Float64).fill_nan(None))


def peak_times_from_summary(summary: pl.DataFrame) -> dict[int, int]:
    """arm_idx → time_idx of each arm's peak, as recorded in the summary."""
    return {r["arm_idx"]: r["peak_time_idx"] for r in summary.iter_rows(named=True) if r["peak_time_idx"] is not None}
