"""The cohort every source produces: covariates, baseline beats and drug sensitivity per patient.

A synthetic population (``vtrial.sources.population``), a clinical table (``vtrial.sources.table_cohort``)
and a WFDB folder (``vtrial.sources.wfdb_cohort``) all become a ``Cohort``; patient i is the same patient
in every arm of a trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vtrial.physiology.waves import Waves

COHORT_STREAM = 0xC0407  # seed-sequence key of the cohort draw


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


def lognormal_sensitivity(z, cv: float) -> np.ndarray:
    """Drug-effect sensitivity from standard normal draws ``z``: log-normal, median 1, coefficient of
    variation ``cv``."""
    return np.exp(np.sqrt(np.log1p(cv**2)) * np.asarray(z, float))
