"""Synthetic populations: covariates, baseline beats and drug sensitivity per virtual patient.

A population file (``cohorts/*.yaml``) gives covariate and baseline-interval distributions; each
patient's baseline ECGSYN beat is fitted so that its *measured* intervals equal the drawn ones. The
cohort depends only on (population, size, seed): patient i is the same patient in every arm.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from vtrial.physiology.fit import waves_for_intervals
from vtrial.physiology.waves import Waves

COHORT_STREAM = 0xC0407  # seed-sequence key of the cohort draw
HEALTHY_ADULTS = Path(__file__).resolve().parents[1] / "cohorts" / "healthy_adults.yaml"


@dataclass(frozen=True)
class Cohort:
    """B virtual patients: covariates, baseline waves, drug-effect sensitivity."""

    sex: np.ndarray  # "F" / "M"
    age_y: np.ndarray
    weight_kg: np.ndarray
    sensitivity: np.ndarray  # multiplier on the drug's ECG effect, median 1
    waves: Waves  # baseline beats (float64)

    @property
    def size(self) -> int:
        return len(self.sex)


def load_population(path: str | Path) -> dict:
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    for key in ("covariates", "baseline", "sensitivity"):
        if key not in spec:
            raise ValueError(f"{path}: missing section {key!r}")
    return spec


def lognormal_sensitivity(z, cv: float) -> np.ndarray:
    """Drug-effect sensitivity from standard normal draws ``z``: log-normal, median 1, coefficient of
    variation ``cv``."""
    return np.exp(np.sqrt(np.log1p(cv**2)) * np.asarray(z, float))


def real_subject_sensitivity_cv() -> float:
    """The CV used for real subjects, whose sensitivity is not observed: the healthy-adult population's."""
    return float(load_population(HEALTHY_ADULTS)["sensitivity"]["drug_effect_cv"])


def _normal(rng, d: dict, n: int) -> np.ndarray:
    lo = d.get("min", d["mean"] - 3 * d["sd"])
    hi = d.get("max", d["mean"] + 3 * d["sd"])
    return np.clip(d["mean"] + d["sd"] * rng.standard_normal(n), lo, hi)


def sample_cohort(spec: dict, size: int, seed: int) -> Cohort:
    """Draw ``size`` patients from a population spec with their own seed stream."""
    if size < 1:
        raise ValueError(f"size = {size!r} must be >= 1")
    rng = np.random.default_rng([seed, COHORT_STREAM])
    cov, base = spec["covariates"], spec["baseline"]
    female = rng.random(size) < cov["female_fraction"]
    age = _normal(rng, cov["age_y"], size)
    weight = _normal(rng, cov["weight_kg"], size)
    rr = _normal(rng, base["rr_ms"], size)
    pr = _normal(rng, base["pr_ms"], size)
    qrs = _normal(rng, base["qrs_ms"], size)
    jtpc = _normal(rng, base["jtpeakc_ms"], size) + female * base.get("female_jtpeakc_offset_ms", 0.0)
    tpte = _normal(rng, base["tpte_ms"], size)
    t_height = np.clip(_normal(rng, base["t_height_mv"], size), 0.08, None)
    sensitivity = lognormal_sensitivity(rng.standard_normal(size), spec["sensitivity"]["drug_effect_cv"])
    jtp = jtpc * (rr / 1000.0) ** 0.58
    start = Waves.typical(size)
    h = start.height_mv.clone()
    h[:, 4] = torch.as_tensor(t_height)
    waves, _ = waves_for_intervals(rr, pr, qrs, jtp, tpte, iterations=10, base=start.replace(height_mv=h))
    return Cohort(np.where(female, "F", "M"), age, weight, sensitivity, waves)


def load_cohort(spec, seed: int, base_dir: Path | None = None, strict: bool = False) -> tuple[Cohort, dict]:
    """The cohort a protocol's ``cohort`` section names (``vtrial.protocol.Cohort``) and its report (source,
    patients, records or subjects skipped with reasons)."""
    from vtrial.protocol import cohort_path, data_path

    if spec.table is not None:
        from vtrial.cohort_table import cohort_from_table

        return cohort_from_table(data_path(spec.table, base_dir), seed, spec.size)
    if spec.wfdb is not None:
        from vtrial.cohort_wfdb import cohort_from_wfdb

        return cohort_from_wfdb(data_path(spec.wfdb, base_dir), seed, spec.lead or "II", spec.size, strict)
    path = cohort_path(spec.population, base_dir)
    cohort = sample_cohort(load_population(path), spec.size, seed)
    return cohort, {"source": "population", "path": str(path), "patients": cohort.size, "skipped": []}
