"""Cohort, exposure and the mechanistic sampler without Ray: determinism, batching, physiology."""
import copy

import numpy as np
import pytest

from vtrial.sources.population import builtin_population, load_population, sample_cohort
from vtrial.trial import build_units
from vtrial.spec.work_units import take
from vtrial.signal.measure import measure
from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.spec.protocol import parse_protocol
from vtrial.sampling.mechanistic import MechanisticSampler

BASE = {
    "name": "s", "seed": 11, "cohort": {"size": 5},
    "arms": [{"name": "placebo", "placebo": True},
             {"name": "dof", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]}],
    "schedule": {"times_h": [-0.5, 2.0, 24.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
}


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


def test_exposure_placebo_dose_fixed_and_combination():
    d = copy.deepcopy(BASE)
    d["drugs"] = {"cmpd": {"ic50_nM": {"hERG": 100.0}, "hill": {"hERG": 1.0}, "mw_g_mol": 400.0, "fu": 0.2,
                           "free_cmax_nM": 50.0}}
    d["arms"] += [{"name": "fixed", "drugs": [{"drug": "cmpd", "exposure": {"multiple_of_free_cmax": 2}}]},
                  {"name": "combo", "drugs": [{"drug": "cmpd", "exposure": {"conc_free_nM": 100.0}},
                                              {"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]}]
    u = build_units(parse_protocol(d))
    herg = u["block"][:, CHANNELS.index("hERG")]
    arm, t = u["arm_idx"], u["time_idx"]
    assert np.all(herg[arm == 0] == 0) and np.all(u["conc_free_nM"][arm == 0] == 0)
    assert np.all(herg[t == 0] == 0)  # the first time is pre-dose in every arm
    fixed = (arm == 2) & (t > 0)
    np.testing.assert_allclose(u["conc_free_nM"][fixed], 100.0)
    np.testing.assert_allclose(herg[fixed], 0.5)
    combo, dof = (arm == 3) & (t == 1), (arm == 1) & (t == 1)
    np.testing.assert_allclose(1 - herg[combo], 0.5 * (1 - herg[dof]))  # independent binding


def test_samples_do_not_depend_on_batching():
    p = parse_protocol(BASE)
    u = build_units(p)
    s = MechanisticSampler(3, 500.0)
    whole = s.sample(u, p.seed)
    parts = [s.sample(take(u, slice(i, i + 4)), p.seed) for i in range(0, len(u["patient"]), 4)]
    for k in ("qtcf_ms", "tpte_ms", "patient", "sample"):
        np.testing.assert_array_equal(whole[k], np.concatenate([q[k] for q in parts]))


def test_dofetilide_prolongs_and_samples_vary():
    p = parse_protocol(BASE)
    rows = MechanisticSampler(3, 500.0).sample(build_units(p), p.seed)
    q, arm, t = rows["qtcf_ms"], rows["arm_idx"], rows["time_idx"]
    assert np.mean(q[(arm == 1) & (t == 1)]) - np.mean(q[(arm == 1) & (t == 0)]) > 25
    assert abs(np.mean(q[(arm == 0) & (t == 1)]) - np.mean(q[(arm == 0) & (t == 0)])) < 8
    first_unit = q[:3]
    assert np.std(first_unit) > 0  # stochastic samples differ


def test_unknown_sampler_setting():
    with pytest.raises(ValueError, match=r"unknown sampler settings \['noise'\]"):
        MechanisticSampler(2, settings={"noise": 1.0})
