"""Synthetic populations: patients drawn from a population file, seeded, measuring as drawn."""

import numpy as np
import pytest

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.signal.measure import measure
from vtrial.sources.population import builtin_population, load_population, sample_cohort


def test_cohort_matches_its_population_and_is_seeded():
    spec = load_population(builtin_population("healthy_adults"))
    a = sample_cohort(spec, 300, seed=1)
    b = sample_cohort(spec, 300, seed=1)
    np.testing.assert_array_equal(a.waves.t_ms.numpy(), b.waves.t_ms.numpy())
    m = measure(ecgsyn_beat(a.waves.to_ecgsyn(), 500.0), 500.0, a.waves.rr_s.numpy() * 1000)
    assert m["valid"].all()
    assert np.mean(m["qtcf_ms"]) == pytest.approx(400, abs=10) and 10 < np.std(m["qtcf_ms"]) < 25
    assert np.mean(a.sex == "F") == pytest.approx(0.5, abs=0.1)
    assert np.median(a.sensitivity) == pytest.approx(1.0, abs=0.1)
