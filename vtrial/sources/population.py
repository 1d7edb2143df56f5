"""Synthetic populations: covariates, baseline beats and drug sensitivity per virtual patient.

A population file (a built-in one, ``vtrial/data/cohorts/NAME.yaml``, or your own) gives covariate and baseline-interval distributions; each
patient's baseline ECGSYN beat is fitted so that its *measured* intervals equal the drawn ones. The
cohort depends only on (population, size, seed): patient i is the same patient in every arm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from vtrial.data import builtin_names, data_file
from vtrial.physiology.fit import waves_for_intervals
from vtrial.physiology.waves import Waves
from vtrial.sources.cohort import COHORT_STREAM, Cohort, lognormal_sensitivity

DEFAULT_POPULATION = "healthy_adults"


def builtin_populations() -> list[str]:
    """The names of the populations shipped with vtrial."""
    return builtin_names("cohorts")


def builtin_population(name: str) -> Path:
    """The file of a built-in population (``FileNotFoundError`` naming the known ones)."""
    path = data_file("cohorts", f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no built-in population {name!r}; built-in: {', '.join(builtin_populations())}")
    return path


def load_population(path: str | Path) -> dict:
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    for key in ("covariates", "baseline", "sensitivity"):
        if key not in spec:
            raise ValueError(f"{path}: missing section {key!r}")
    return spec


def real_subject_sensitivity_cv() -> float:
    """The CV used for real subjects, whose sensitivity is not observed: the healthy-adult population's."""
    return float(load_population(builtin_population(DEFAULT_POPULATION))["sensitivity"]["drug_effect_cv"])


def _normal(rng, d: dict, n: int) -> np.ndarray:
    lo = d.get("min", d["mean"] - 3 * d["sd"])
    hi = d.get("max", d["mean"] + 3 * d["sd"])
    return np.clip(d["mean"] + d["sd"] * rng.standard_normal(n), lo, hi)


COHORT_CHUNK = 256  # patients whose baseline beats are fitted at once: the build's memory stays flat


def sample_cohort(spec: dict, size: int, seed: int, chunk: int = COHORT_CHUNK) -> Cohort:
    """Draw ``size`` patients from a population spec with their own seed stream. The covariates are
    drawn at once (a few numbers per patient); the baseline beats are fitted ``chunk`` patients at a
    time (each patient's fit is its own, so the chunking changes no value), so the peak memory of a
    build does not grow with the cohort."""
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
    parts = []
    for lo in range(0, size, chunk):
        sl = slice(lo, min(size, lo + chunk))
        start = Waves.typical(sl.stop - sl.start)
        h = start.height_mv.clone()
        h[:, 4] = torch.as_tensor(t_height[sl])
        w, _ = waves_for_intervals(
            rr[sl], pr[sl], qrs[sl], jtp[sl], tpte[sl], iterations=10, base=start.replace(height_mv=h)
        )
        parts.append(w)
    waves = Waves(*(torch.cat([getattr(w, k) for w in parts]) for k in ("t_ms", "sigma_ms", "height_mv", "rr_s")))
    return Cohort(np.where(female, "F", "M"), age, weight, sensitivity, waves)
