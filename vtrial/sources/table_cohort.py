"""Clinical-table cohorts: one virtual patient per subject of a table in the layout of the FDA study's
``SCR-002.Clinical.Data.csv`` (``vtrial.sources.study_table.load_clinical_table`` reads it and handles its quirks).

Each subject's baseline is the mean of their pre-dose ECGs (``BASELINE == "Y"``, every period): RR, PR,
QRS, J-Tpeak and Tpeak-Tend; the patient's ECGSYN beat is fitted so that its *measured* intervals are
those (``waves_for_intervals``), so the beat's QT is QRS + J-Tpeak + Tpeak-Tend as the study measured
it, and the report gives the largest |QT(beat) − QT(table)|. Sex, age and weight are the subject's.
The drug sensitivity of a real subject is not observed: it is drawn, with the protocol's seed, from the
log-normal of ``cohorts/healthy_adults.yaml`` (a random effect, as in the synthetic cohorts).

Subjects without a usable value of some baseline interval are skipped and named in the report.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import polars as pl

from vtrial.physiology.fit import waves_for_intervals
from vtrial.sources.cohort import COHORT_STREAM, Cohort, lognormal_sensitivity
from vtrial.sources.population import real_subject_sensitivity_cv
from vtrial.sources.study_table import load_clinical_table

INTERVALS = ("rr_ms", "pr_ms", "qrs_ms", "jtpeak_ms", "tpte_ms")


def _id_key(subject) -> int:
    return (
        int(subject) if isinstance(subject, (int, np.integer)) and subject >= 0 else zlib.crc32(str(subject).encode())
    )


def subject_baselines(table: pl.DataFrame) -> pl.DataFrame:
    """One row per subject: covariates and the mean of each pre-dose interval (nulls ignored), with
    ``n_baseline_ecgs``; sorted by subject."""
    base = table.filter(pl.col("baseline"))
    return (
        base.group_by("subject")
        .agg(
            pl.col("sex").first(),
            pl.col("age_y").first(),
            pl.col("weight_kg").first(),
            pl.len().alias("n_baseline_ecgs"),
            *[pl.col(c).mean() for c in (*INTERVALS, "qt_ms")],
        )
        .sort("subject")
    )


def cohort_from_table(path: str | Path, seed: int, size: int | None = None) -> tuple[Cohort, dict]:
    """The cohort of a clinical table file (the first ``size`` usable subjects by ID, default all) and its
    report: source, subjects loaded and skipped (with reasons), the table's quirks handled, QT fit error."""
    path = Path(path)
    table, quirks = load_clinical_table(path)
    cohort, report = cohort_from_rows(table, seed, size, where=str(path))
    return cohort, {**report, "path": str(path), "table_quirks": quirks}


def cohort_from_rows(
    table: pl.DataFrame, seed: int, size: int | None = None, subjects=None, where: str = "table"
) -> tuple[Cohort, dict]:
    """As ``cohort_from_table`` from rows already read (``load_clinical_table``), optionally only the
    given ``subjects`` (sorted by ID). A subject's drawn sensitivity depends on the seed and its ID alone,
    not on who else is in the cohort."""
    path = where
    subjects = subject_baselines(table if subjects is None else table.filter(pl.col("subject").is_in(list(subjects))))
    skipped = []
    usable = []
    for row in subjects.iter_rows(named=True):
        bad = [c for c in INTERVALS if row[c] is None or not np.isfinite(row[c]) or row[c] <= 0]
        if row["sex"] not in ("M", "F"):
            bad.append(f"sex {row['sex']!r}")
        if bad:
            skipped.append({"subject": row["subject"], "reason": f"no usable pre-dose {', '.join(bad)}"})
        else:
            usable.append(row)
    if not usable:
        raise ValueError(f"{path}: no subject has usable pre-dose intervals ({len(skipped)} skipped)")
    if size is not None:
        if size > len(usable):
            raise ValueError(f"{path}: cohort.size = {size} but the table has {len(usable)} usable subjects")
        usable = usable[:size]
    rr, pr, qrs, jtp, tpte = (np.array([r[c] for r in usable], float) for c in INTERVALS)
    waves, measured = waves_for_intervals(rr, pr, qrs, jtp, tpte, iterations=12)
    qt_table = np.array([np.nan if r["qt_ms"] is None else r["qt_ms"] for r in usable], float)
    qt_err = np.abs(np.asarray(measured["qt_ms"]) - qt_table)

    cv = real_subject_sensitivity_cv()
    z = [np.random.default_rng([seed, COHORT_STREAM, 0x7AB1E, _id_key(r["subject"])]).standard_normal() for r in usable]
    sensitivity = lognormal_sensitivity(z, cv)
    cohort = Cohort(
        np.array([r["sex"] for r in usable]),
        np.array([r["age_y"] for r in usable], float),
        np.array([r["weight_kg"] for r in usable], float),
        sensitivity,
        waves,
    )
    report = {
        "source": "table",
        "patients": len(usable),
        "subjects": [r["subject"] for r in usable],
        "skipped": skipped,
        "qt_fit_error_ms_max": float(np.nanmax(qt_err)) if np.isfinite(qt_err).any() else None,
        "sensitivity": f"drawn, log-normal CV {cv} (not observed in real subjects)",
    }
    return cohort, report
