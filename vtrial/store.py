"""Parquet tables of a trial and their aggregation with polars.

``samples.parquet`` is a folder of parts, one per batch of work units, each written atomically
(temporary file, then rename), so an interrupted run leaves only whole parts and ``--resume`` can skip
them. ``patients.parquet`` and ``arms.parquet`` are aggregated from the parts lazily (the driver never
holds all samples).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

SAMPLES = "samples.parquet"
PATIENTS = "patients.parquet"
ARMS = "arms.parquet"
CATEGORICAL = {"p_qtcf_gt_450": ("qtcf_ms", 450.0), "p_qtcf_gt_480": ("qtcf_ms", 480.0),
               "p_qtcf_gt_500": ("qtcf_ms", 500.0), "p_dqtcf_gt_30": ("dqtcf_ms", 30.0),
               "p_dqtcf_gt_60": ("dqtcf_ms", 60.0)}
DELTAS = ("qtcf_ms", "jtpeakc_ms", "tpte_ms", "qrs_ms", "pr_ms", "hr_bpm")


def part_path(out: Path, index: int) -> Path:
    return Path(out) / SAMPLES / f"part-{index:06d}.parquet"


def done_parts(out: Path) -> set[int]:
    folder = Path(out) / SAMPLES
    if not folder.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")}


def write_part(out: Path, index: int, rows: dict[str, np.ndarray], arm_names: list[str],
               protocol_hash: str, seed: int) -> int:
    """Write one batch of sample rows; returns the row count."""
    n = len(rows["patient"])
    table = pa.table({
        "arm": pa.array(np.asarray(arm_names, dtype=object)[rows["arm_idx"]].astype(str)),
        **{k: pa.array(v) for k, v in rows.items()},
        "protocol_hash": pa.array([protocol_hash] * n),
        "seed": pa.array(np.full(n, seed, dtype=np.int64)),
    })
    path = part_path(out, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return n


def scan_samples(out: Path) -> pl.LazyFrame:
    return pl.scan_parquet(Path(out) / SAMPLES / "*.parquet")


def read_samples(out: Path) -> pl.DataFrame:
    """All samples in canonical order (arm, patient, time, sample)."""
    return scan_samples(out).collect().sort("arm_idx", "patient", "time_idx", "sample")


def patient_table(out: Path) -> pl.DataFrame:
    """Per arm × patient × time: summaries over the S samples (valid ones only) and endpoint probabilities."""
    s = scan_samples(out)
    base = (s.filter((pl.col("time_idx") == 0) & pl.col("valid"))
            .group_by("arm_idx", "patient").agg(*[pl.col(c).mean().alias(f"{c}_base") for c in DELTAS]))
    s = s.join(base, on=["arm_idx", "patient"], how="left").with_columns(
        *[(pl.col(c) - pl.col(f"{c}_base")).alias(f"d{c}") for c in DELTAS])
    v = pl.col("valid")
    aggs = [pl.len().alias("n_samples"), v.sum().alias("n_valid"), pl.col("conc_free_nM").mean()]
    for c in ("qtcf_ms", "dqtcf_ms"):
        col = pl.col(c).filter(v)
        aggs += [col.mean().alias(f"{c}_mean"), col.std().alias(f"{c}_sd"), col.quantile(0.05).alias(f"{c}_q05"),
                 col.quantile(0.5).alias(f"{c}_q50"), col.quantile(0.95).alias(f"{c}_q95")]
    for c in ("djtpeakc_ms", "dtpte_ms", "dqrs_ms", "dpr_ms", "dhr_bpm", "jtpeakc_ms", "tpte_ms"):
        aggs.append(pl.col(c).filter(v).mean().alias(f"{c}_mean"))
    for name, (c, thr) in CATEGORICAL.items():
        aggs.append((pl.col(c).filter(v) > thr).mean().alias(name))
    return (s.group_by("arm", "arm_idx", "patient", "time_idx", "time_h").agg(aggs)
            .sort("arm_idx", "patient", "time_idx").collect())


def _ci90(mean, sd, n):
    half = np.where(n > 1, stats.t.ppf(0.95, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean - half, mean + half


def arm_table(patients: pl.DataFrame, placebo_idx: int | None) -> pl.DataFrame:
    """Per arm × time: ΔQTcF and placebo-corrected ΔΔQTcF (paired by patient: every virtual patient
    receives every arm) with two-sided 90% CIs, expected risk and its variability."""
    p = patients
    if placebo_idx is not None:
        plc = p.filter(pl.col("arm_idx") == placebo_idx).select("patient", "time_idx", pl.col("dqtcf_ms_mean").alias("plc"))
        p = p.join(plc, on=["patient", "time_idx"], how="left").with_columns(
            (pl.col("dqtcf_ms_mean") - pl.col("plc")).alias("ddqtcf_ms"))
    else:
        p = p.with_columns(pl.lit(None, dtype=pl.Float64).alias("ddqtcf_ms"))
    a = p.group_by("arm", "arm_idx", "time_idx", "time_h").agg(
        pl.col("dqtcf_ms_mean").is_not_null().sum().alias("n_patients"),
        pl.col("n_valid").sum().alias("n_valid_samples"),
        pl.col("n_samples").sum().alias("n_samples"),
        pl.col("conc_free_nM").mean().alias("conc_free_nM_mean"),
        pl.col("dqtcf_ms_mean").mean().alias("dqtcf_ms"),
        pl.col("dqtcf_ms_mean").std().alias("dqtcf_ms_sd_between"),
        pl.col("dqtcf_ms_sd").pow(2).mean().sqrt().alias("dqtcf_ms_sd_within"),
        pl.col("ddqtcf_ms").mean().alias("ddqtcf_ms"),
        pl.col("ddqtcf_ms").std().alias("ddqtcf_ms_sd"),
        pl.col("ddqtcf_ms").is_not_null().sum().alias("n_paired"),
        pl.col("djtpeakc_ms_mean").mean().alias("djtpeakc_ms"),
        pl.col("dtpte_ms_mean").mean().alias("dtpte_ms"),
        pl.col("qtcf_ms_mean").mean().alias("qtcf_ms"),
        *[pl.col(k).mean().alias(k) for k in CATEGORICAL],
        pl.col("p_dqtcf_gt_30").std().alias("p_dqtcf_gt_30_sd"),
    ).sort("arm_idx", "time_idx")
    lo, hi = _ci90(a["dqtcf_ms"].to_numpy(), a["dqtcf_ms_sd_between"].to_numpy(), a["n_patients"].to_numpy())
    dlo, dhi = _ci90(a["ddqtcf_ms"].fill_null(np.nan).to_numpy(), a["ddqtcf_ms_sd"].fill_null(np.nan).to_numpy(),
                     a["n_paired"].to_numpy())
    return a.with_columns(pl.Series("dqtcf_ms_ci90_lo", lo), pl.Series("dqtcf_ms_ci90_hi", hi),
                          pl.Series("ddqtcf_ms_ci90_lo", dlo).fill_nan(None),
                          pl.Series("ddqtcf_ms_ci90_hi", dhi).fill_nan(None))


def write_table(df: pl.DataFrame, out: Path, name: str, protocol_hash: str, seed: int) -> Path:
    path = Path(out) / name
    df.with_columns(pl.lit(protocol_hash).alias("protocol_hash"), pl.lit(seed, dtype=pl.Int64).alias("seed")).write_parquet(path)
    return path
