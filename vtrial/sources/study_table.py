"""Reader for the FDA study SCR-002 table (PhysioNet ECGRDVQ) and its change-from-baseline summaries.

Johannesen L. et al., Clin Pharmacol Ther 2014 (doi:10.1038/clpt.2014.155). The table's quirks are
handled here and counted in the returned report, never silently passed on:

- dofetilide concentrations are in pg/mL, the others in ng/mL → ``conc_ng_ml`` for all;
- EXDOSE is µg for dofetilide, mg otherwise → ``dose_mg``;
- two PR values are 32-bit wraps (−4294966951 = 345 ms) → unwrapped;
- QT and other intervals are NA in some rows → kept as null, counted;
- pre-dose rows carry the period's treatment name although no drug is on board yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

REQUIRED_COLUMNS = (
    "RANDID",
    "SEX",
    "AGE",
    "WGHT",
    "EXTRT",
    "EXDOSE",
    "EXDOSU",
    "TPT",
    "BASELINE",
    "PCSTRESN",
    "PCSTRESU",
    "RR",
    "PR",
    "QT",
    "QRS",
    "JTPEAK",
    "TPEAKTEND",
)

TREATMENTS = {
    "Placebo": "placebo",
    "Dofetilide": "dofetilide",
    "Quinidine Sulph": "quinidine",
    "Ranolazine": "ranolazine",
    "Verapamil HCL": "verapamil",
}
WRAP_32 = 2**32


NUMERIC_COLUMNS = ("RANDID", "AGE", "WGHT", "EXDOSE", "TPT", "PCSTRESN", "RR", "PR", "QRS", "QT", "JTPEAK", "TPEAKTEND")


def _numeric(raw: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The table with its numeric columns as numbers; ``ValueError`` naming the first value that is not one."""
    for col in (c for c in NUMERIC_COLUMNS if c in raw.columns):
        if raw[col].dtype.is_numeric():
            continue
        cast = raw[col].cast(pl.Float64, strict=False)
        bad = raw[col].is_not_null() & cast.is_null()
        if bad.any():
            row = int(bad.arg_max())
            raise ValueError(
                f"{path}: column {col} holds a value that is not a number: {raw[col][row]!r} (line {row + 2})"
            )
        raw = raw.with_columns(cast.cast(pl.Int64) if col == "RANDID" else cast)
    return raw


def load_clinical_table(path: str | Path) -> tuple[pl.DataFrame, dict[str, int]]:
    """Read ``SCR-002.Clinical.Data.csv`` into tidy columns with units in their names.

    Returns
    -------
    (table, report): one row per ECG with ``record`` (EGREFID, the ECG's record name), ``subject``, ``sex``, ``age_y``, ``weight_kg``, ``treatment``,
    ``dose_mg``, ``time_h``, ``baseline``, ``conc_ng_ml``, ``rr_ms``, ``pr_ms``, ``qt_ms``, ``qrs_ms``,
    ``jtpeak_ms``, ``tpte_ms``, ``qtcf_ms``, ``jtpeakc_ms``; and counts of each quirk handled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"clinical table not found: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path}: the file is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} on line {line})") from None
    try:
        raw = pl.read_csv(data, null_values="NA", infer_schema_length=10000)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{path}: not a CSV table: {str(exc).splitlines()[0]}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    if raw.height == 0:
        raise ValueError(f"{path}: no rows under the header")
    raw = _numeric(raw, path)
    unknown = sorted(set(raw["EXTRT"].unique().to_list()) - set(TREATMENTS))
    if unknown:
        raise ValueError(f"{path}: unknown treatments {unknown}; known: {sorted(TREATMENTS)}")

    report = {
        "rows": raw.height,
        "pr_wrapped_32bit": int((raw["PR"] < -(2**31) // 2).sum()),
        "conc_pg_per_ml_converted": int((raw["PCSTRESU"] == "pg/mL").sum()),
        "dose_ug_converted": int((raw["EXDOSU"] == "ug").sum()),
    }
    for col in ("QT", "RR", "QRS", "PR", "JTPEAK", "TPEAKTEND"):
        report[f"{col.lower()}_missing"] = int(raw[col].is_null().sum())

    df = raw.select(
        (pl.col("EGREFID").cast(pl.Utf8) if "EGREFID" in raw.columns else pl.lit(None, dtype=pl.Utf8)).alias("record"),
        pl.col("RANDID").alias("subject"),
        pl.col("SEX").alias("sex"),
        pl.col("AGE").cast(pl.Float64).alias("age_y"),
        pl.col("WGHT").cast(pl.Float64).alias("weight_kg"),
        pl.col("EXTRT").replace_strict(TREATMENTS).alias("treatment"),
        pl.when(pl.col("EXDOSU") == "ug")
        .then(pl.col("EXDOSE").cast(pl.Float64) / 1000.0)
        .otherwise(pl.col("EXDOSE").cast(pl.Float64))
        .alias("dose_mg"),
        pl.col("TPT").cast(pl.Float64).alias("time_h"),
        (pl.col("BASELINE") == "Y").fill_null(False).alias("baseline"),
        pl.when(pl.col("PCSTRESU") == "pg/mL")
        .then(pl.col("PCSTRESN").cast(pl.Float64) / 1000.0)
        .otherwise(pl.col("PCSTRESN").cast(pl.Float64))
        .alias("conc_ng_ml"),
        pl.col("RR").cast(pl.Float64).alias("rr_ms"),
        pl.when(pl.col("PR") < -(2**31) // 2)
        .then(pl.col("PR") + WRAP_32)
        .otherwise(pl.col("PR"))
        .cast(pl.Float64)
        .alias("pr_ms"),
        pl.col("QT").cast(pl.Float64).alias("qt_ms"),
        pl.col("QRS").cast(pl.Float64).alias("qrs_ms"),
        pl.col("JTPEAK").cast(pl.Float64).alias("jtpeak_ms"),
        pl.col("TPEAKTEND").cast(pl.Float64).alias("tpte_ms"),
    ).with_columns(
        (pl.col("qt_ms") / (pl.col("rr_ms") / 1000.0) ** (1 / 3)).alias("qtcf_ms"),
        (pl.col("jtpeak_ms") / (pl.col("rr_ms") / 1000.0) ** 0.58).alias("jtpeakc_ms"),
    )
    return df, report


def placebo_corrected(
    df: pl.DataFrame, columns=("qtcf_ms", "jtpeakc_ms", "tpte_ms", "qrs_ms", "pr_ms", "rr_ms"), subjects=None
) -> pl.DataFrame:
    """Mean Δ and ΔΔ per treatment × time, as the study's summary computes ΔΔQTcF.

    Triplicates are averaged per subject × treatment × time; Δ is the change from the subject's own
    pre-dose value in that period; ΔΔ = Δ − (mean placebo Δ over subjects at the same time). Returns
    one row per treatment × time with ``d_<col>`` and ``dd_<col>`` means over subjects and the mean
    ``conc_ng_ml``.
    """
    if subjects is not None:
        df = df.filter(pl.col("subject").is_in(list(subjects)))
    trip = df.group_by("subject", "treatment", "time_h").agg(
        *[pl.col(c).mean() for c in columns], pl.col("conc_ng_ml").mean(), pl.col("baseline").any()
    )
    base = trip.filter(pl.col("baseline")).select("subject", "treatment", *[pl.col(c).alias(f"{c}_0") for c in columns])
    delta = trip.join(base, on=["subject", "treatment"]).with_columns(
        *[(pl.col(c) - pl.col(f"{c}_0")).alias(f"d_{c}") for c in columns]
    )
    placebo = (
        delta.filter(pl.col("treatment") == "placebo")
        .group_by("time_h")
        .agg(*[pl.col(f"d_{c}").mean().alias(f"p_{c}") for c in columns])
    )
    dd = delta.join(placebo, on="time_h").with_columns(
        *[(pl.col(f"d_{c}") - pl.col(f"p_{c}")).alias(f"dd_{c}") for c in columns]
    )
    return (
        dd.group_by("treatment", "time_h")
        .agg(
            pl.len().alias("n_subjects"),
            pl.col("conc_ng_ml").mean(),
            *[pl.col(f"d_{c}").mean() for c in columns],
            *[pl.col(f"dd_{c}").mean() for c in columns],
        )
        .sort("treatment", "time_h")
    )


def measured_concentrations(df: pl.DataFrame, drug: str, subjects, times_h) -> tuple[np.ndarray, dict[str, int]]:
    """Each subject's measured plasma concentration of ``drug`` (ng/mL, triplicates averaged) at ``times_h``:
    (len(subjects), len(times_h)), NaN where the subject has no such period. Pre-dose times read 0; a
    post-dose sample missing before the first measured one (below quantification early in absorption)
    reads 0, one missing later is interpolated linearly from its neighbours (the last one carried).
    Returns the matrix and counts of what was filled in."""
    times_h = np.asarray(times_h, float)
    per = df.filter(pl.col("treatment") == drug).group_by("subject", "time_h").agg(pl.col("conc_ng_ml").mean())
    by_subject: dict = {}
    for s, t, c in per.iter_rows():
        by_subject.setdefault(s, {})[t] = c
    out = np.full((len(subjects), len(times_h)), np.nan)
    counts = {"early_missing_as_zero": 0, "interpolated": 0, "subjects_without_period": 0}
    post = times_h > 0
    for i, s in enumerate(subjects):
        c = np.array([by_subject.get(s, {}).get(t) for t in times_h], float)  # missing (None) → NaN
        c[~post] = 0.0
        have = np.flatnonzero(post & np.isfinite(c))
        if have.size == 0:
            counts["subjects_without_period"] += 1
            continue
        early = post & ~np.isfinite(c) & (np.arange(len(c)) < have[0])
        counts["early_missing_as_zero"] += int(early.sum())
        c[early] = 0.0
        gap = ~np.isfinite(c)
        counts["interpolated"] += int(gap.sum())
        if gap.any():
            c[gap] = np.interp(times_h[gap], times_h[~gap], c[~gap])
        out[i] = c
    return out, counts
