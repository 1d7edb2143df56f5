"""Cohort, exposure and the mechanistic sampler without Ray: determinism, batching, physiology."""

import numpy as np
import pytest

from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import take
from vtrial.trial import build_units


def test_samples_do_not_depend_on_batching(dofetilide_trial):
    p = parse_protocol(dofetilide_trial)
    u = build_units(p)
    s = MechanisticSampler(3, 500.0)
    whole = s.sample(u, p.seed)
    parts = [s.sample(take(u, slice(i, i + 4)), p.seed) for i in range(0, len(u["patient"]), 4)]
    for k in ("qtcf_ms", "tpte_ms", "patient", "sample"):
        np.testing.assert_array_equal(whole[k], np.concatenate([q[k] for q in parts]))


def test_dofetilide_prolongs_and_samples_vary(dofetilide_trial):
    p = parse_protocol(dofetilide_trial)
    rows = MechanisticSampler(3, 500.0).sample(build_units(p), p.seed)
    q, arm, t = rows["qtcf_ms"], rows["arm_idx"], rows["time_idx"]
    assert np.mean(q[(arm == 1) & (t == 1)]) - np.mean(q[(arm == 1) & (t == 0)]) > 25
    assert abs(np.mean(q[(arm == 0) & (t == 1)]) - np.mean(q[(arm == 0) & (t == 0)])) < 8
    first_unit = q[:3]
    assert np.std(first_unit) > 0  # stochastic samples differ


def test_unknown_sampler_setting():
    with pytest.raises(ValueError, match=r"unknown sampler settings \['noise'\]"):
        MechanisticSampler(2, settings={"noise": 1.0})
