"""From a trial's samples to everything users act on: the per-patient and per-arm tables, the arm
summary and comparisons, concentration–QTc per drug, TdP categories, and the run's headline metrics.

Pure computation on the protocol and the samples (a polars LazyFrame); the engine and ``vtrial report``
both call ``analyse``, so a report regenerated from a run folder equals the one the run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from vtrial.spec.protocol import Protocol
from vtrial.stats import risk
from vtrial.stats.cqtc import cqtc_by_drug
from vtrial.stats.tdp import DEFAULT_CLASSIFIER, TdpClassifier, drug_features, tdp_table


@dataclass
class Analysis:
    patients: pl.DataFrame
    arms: pl.DataFrame
    summary: pl.DataFrame
    comparisons: pl.DataFrame
    cqtc: pl.DataFrame
    tdp: pl.DataFrame | None
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tdp_classifier: TdpClassifier | None = None


def placebo_index(protocol: Protocol) -> int | None:
    return next((i for i, a in enumerate(protocol.arms) if a.placebo), None)


def single_drug_arms(protocol: Protocol) -> dict[int, str | None]:
    """arm_idx → the drug's name for arms giving exactly one drug; None otherwise."""
    return {i: (a.drugs[0].drug if len(a.drugs) == 1 else None) for i, a in enumerate(protocol.arms)}


def fixed_exposure_arms(protocol: Protocol) -> dict[int, tuple[str, float]]:
    """arm_idx → (drug, multiple of its free Cmax) for arms giving one drug at a fixed exposure."""
    out = {}
    for i, a in enumerate(protocol.arms):
        if len(a.drugs) != 1 or a.drugs[0].exposure is None:
            continue
        d, e = a.drugs[0], a.drugs[0].exposure
        cmax = protocol.drug(d.drug).free_cmax_nM
        if e.multiple_of_free_cmax is not None:
            out[i] = (d.drug, float(e.multiple_of_free_cmax))
        elif cmax:
            out[i] = (d.drug, round(float(e.conc_free_nM) / cmax, 6))
    return out


def analyse(protocol: Protocol, samples: pl.LazyFrame, tdp_classifier: TdpClassifier | None = None) -> Analysis:
    placebo = placebo_index(protocol)
    r = protocol.risk
    patients = risk.patient_table(samples)
    arms = risk.arm_table(patients, placebo, r.bootstrap, protocol.seed)
    summary = risk.arm_summary(arms, patients, placebo, r.aversion_lambda, r.bootstrap, protocol.seed)
    comparisons = risk.comparisons(patients, summary, placebo, r.bootstrap, protocol.seed)
    cqtc = cqtc_by_drug(patients, single_drug_arms(protocol), placebo)
    warnings = [w for w in summary["warning"].to_list() if w]
    if placebo is None:
        warnings.append(f"placebo-corrected endpoints (ΔΔ) are absent: {risk.NO_PLACEBO}")
    metrics: dict[str, float] = {}
    for row in summary.iter_rows(named=True):
        arm = row["arm"]
        metrics[f"invalid_samples.{arm}"] = row["invalid_samples"]
        named = {
            f"peak_{row['endpoint']}.{arm}": row["peak_ms"],
            f"peak_{row['endpoint']}_ci90_hi.{arm}": row["ci90_hi_ms"],
            f"mu_r_ms.{arm}": row["mu_r_ms"],
            f"sigma_r_ms.{arm}": row["sigma_r_ms"],
            f"score_ms.{arm}": row["score_ms"],
        }
        metrics.update({k: v for k, v in named.items() if v is not None})
        if row["e14_negative"] is not None:
            metrics[f"e14_negative.{arm}"] = float(row["e14_negative"])
    for row in cqtc.iter_rows(named=True):
        if row["status"] == "ok":
            metrics[f"cqtc_slope_ms_per_nM.{row['drug']}"] = row["slope_ms_per_nM"]
            metrics[f"cqtc_ddqtcf_at_gm_cmax_ms.{row['drug']}"] = row["ddqtcf_at_gm_cmax_ms"]

    tdp, clf = None, tdp_classifier
    exposure = fixed_exposure_arms(protocol)
    if exposure and placebo is not None:
        features = drug_features(arms, exposure)
        categories = {d: protocol.drug(d).tdp_category for d in {d for d, _ in exposure.values()}}
        categories = {d: c for d, c in categories.items() if c is not None}
        if clf is None and DEFAULT_CLASSIFIER.is_file():
            clf = TdpClassifier.load(DEFAULT_CLASSIFIER)
        score_1x = {}
        scores = dict(zip(summary["arm_idx"].to_list(), summary["score_ms"].to_list()))
        for drug in {d for d, _ in exposure.values()}:
            mine = sorted((m, i) for i, (d, m) in exposure.items() if d == drug)
            at = next((i for m, i in mine if m >= 1.0), mine[-1][1])
            score_1x[drug] = scores.get(at)
        tdp, tdp_metrics, clf = tdp_table(
            features, categories, score_1x, clf, protocol.sampling.sampler, protocol.herg_model
        )
        metrics.update(tdp_metrics)
        if clf is not None and clf.sampler and clf.sampler != protocol.sampling.sampler:
            warnings.append(
                f"TdP thresholds were fitted on the {clf.sampler!r} sampler, this run uses "
                f"{protocol.sampling.sampler!r}"
            )
    elif exposure:
        warnings.append("TdP categories need ΔΔQTcF: the protocol has no placebo arm")
    return Analysis(
        patients,
        arms,
        summary,
        comparisons,
        cqtc,
        tdp,
        {k: v for k, v in metrics.items() if v is not None and np.isfinite(v)},
        warnings,
        clf,
    )
