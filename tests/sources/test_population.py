"""Synthetic populations: patients drawn from a population file, seeded, measuring as drawn."""

import numpy as np
import pytest
import torch

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


def test_fitting_the_beats_in_chunks_changes_no_value():
    """The build fits the baseline beats a chunk of patients at a time (flat memory): every value is the
    one a single fit of all patients gives."""
    spec = load_population(builtin_population("healthy_adults"))
    whole = sample_cohort(spec, 70, seed=3, chunk=70)
    chunked = sample_cohort(spec, 70, seed=3, chunk=16)
    for k in ("t_ms", "sigma_ms", "height_mv", "rr_s"):
        assert torch.equal(getattr(whole.waves, k), getattr(chunked.waves, k)), k
    assert np.array_equal(whole.sensitivity, chunked.sensitivity) and list(whole.sex) == list(chunked.sex)
