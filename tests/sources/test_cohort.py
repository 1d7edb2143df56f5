"""The cohort every source produces, and the log-normal drug sensitivity of its patients."""

import numpy as np
import pytest

from vtrial.physiology.waves import Waves
from vtrial.sources.cohort import Cohort, lognormal_sensitivity


def test_lognormal_sensitivity_has_median_one_and_the_asked_cv():
    z = np.random.default_rng(0).standard_normal(200_000)
    s = lognormal_sensitivity(z, 0.3)
    assert np.median(s) == pytest.approx(1.0, abs=0.01)
    assert s.std() / s.mean() == pytest.approx(0.3, abs=0.01)
    assert lognormal_sensitivity([0.0], 0.5)[0] == 1.0


def test_cohort_size_is_its_patients():
    c = Cohort(np.array(["F", "M", "F"]), np.ones(3), np.ones(3), np.ones(3), Waves.typical(3))
    assert c.size == 3
