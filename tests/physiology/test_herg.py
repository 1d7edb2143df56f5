"""The paced dynamic hERG model (CiPA, Li et al. 2017): states, block, trapping, the library's kinetics."""

import numpy as np
import pytest
from scipy.linalg import expm

from vtrial.data import example_protocol
from vtrial.physiology.block import CHANNELS, hill_block
from vtrial.physiology.herg import (
    FREE,
    GRID_LOG10_NM,
    STATES,
    HergBinding,
    action_potential_mv,
    block_curve,
    dynamic_block,
    ikr_charge,
    rate_matrices,
    steady_state_block,
)
from vtrial.spec.drugs import get_drug, known_drugs

SLOW = dict(kmax=50.0, ku_per_ms=2e-5, n=1.0, halfmax=200.0)  # dofetilide-like: slow unbinding


def test_generators_conserve_probability_and_stay_nonnegative():
    v = np.linspace(-90, 40, 14)
    q = rate_matrices(v, 10.0, HergBinding(**SLOW, vhalf_mv=-1.0))
    assert np.allclose(q.sum(axis=1), 0.0, atol=1e-12)  # columns of dx/dt = Q x sum to zero
    off = q - np.einsum("...ii->...i", q)[..., None] * np.eye(len(STATES))
    assert (off >= 0).all()
    p = expm(q[3] * 5.0)
    assert (p >= -1e-12).all() and np.allclose(p.sum(axis=0), 1.0)


def test_drug_free_states_never_reach_bound_states():
    q = rate_matrices(np.array([0.0]), 0.0, None)[0]
    assert np.all(q[FREE:, :] == 0) and np.all(q[:, FREE:] == 0)


def test_action_potential_template():
    t = np.arange(0, 1000.0)
    v = action_potential_mv(t)
    assert v.max() > 20 and abs(v[-1] + 88) < 0.01
    apd90 = t[np.argmax(v < -88 + 0.1 * (v.max() + 88))]
    assert 240 < apd90 < 300


def test_block_is_zero_without_drug_and_rises_with_concentration():
    b = HergBinding(**SLOW, vhalf_mv=-60.0)
    assert steady_state_block(0.0, b) == 0.0
    levels = [steady_state_block(c, b) for c in (0.1, 1.0, 10.0, 100.0, 1000.0)]
    assert all(0 <= x <= 1 for x in levels)
    assert np.all(np.diff(levels) > 0)
    assert levels[-1] > 0.8


def test_trapping_adds_block_for_a_slowly_unbinding_drug():
    """A drug that stays trapped in the closed channel (Vhalf high: bound channels do not reopen at rest)
    blocks more, at the same concentration, than one the closed channel releases (Vhalf very low)."""
    trapped = steady_state_block(5.0, HergBinding(**SLOW, vhalf_mv=-1.0))
    untrapped = steady_state_block(5.0, HergBinding(**SLOW, vhalf_mv=-200.0))
    assert trapped > untrapped + 0.02


def test_interpolated_curve_matches_direct_computation():
    b = HergBinding(**SLOW, vhalf_mv=-30.0)
    for c in (0.37, 4.1, 55.0):
        assert float(dynamic_block(c, b)) == pytest.approx(steady_state_block(c, b), abs=0.005)
    assert float(dynamic_block(0.0, b)) == 0.0
    assert dynamic_block(np.array([[0.0, 1.0], [2.0, 3.0]]), b).shape == (2, 2)
    with pytest.raises(ValueError, match="conc_free_nM"):
        dynamic_block(-1.0, b)


def test_charge_does_not_depend_on_step_size():
    b = HergBinding(**SLOW, vhalf_mv=-1.0)
    for conc, binding in ((0.0, None), (5.0, b)):
        assert ikr_charge(conc, binding, dt_scale=0.2) == pytest.approx(ikr_charge(conc, binding), rel=0.01)


def test_library_kinetics_reproduce_the_static_ic50s():
    """Units and parameters read right: for each CiPA drug the concentration at which the paced model
    blocks half the IKr charge is within 3× of the drug's static hERG IC50 (a different experiment, so
    they agree only roughly; Li et al. 2017 report the same order)."""
    drugs = [get_drug(d, "dynamic") for d in known_drugs() if get_drug(d, "dynamic").herg_binding is not None]
    assert len(drugs) == 12
    for d in drugs:
        curve = block_curve(d.herg_binding)
        ic50_dyn = 10 ** np.interp(0.5, curve, GRID_LOG10_NM)
        assert 1 / 3 < ic50_dyn / d.ic50_nM["hERG"] < 3, d.name


def test_drug_block_uses_kinetics_for_herg_only():
    assert get_drug("dofetilide").herg_binding is None  # the default: Hill block, what the map is calibrated with
    dof = get_drug("dofetilide", "dynamic")
    conc = np.array([0.5, 2.0, 8.0])
    b = dof.block(conc)
    static = hill_block(conc, dof.ic50_vector, dof.hill_vector)
    h = CHANNELS.index("hERG")
    assert np.allclose(np.delete(b, h, axis=1), np.delete(static, h, axis=1))
    assert np.allclose(b[:, h], dynamic_block(conc, dof.herg_binding))
    assert not np.allclose(b[:, h], static[:, h])


def test_inline_drug_kinetics_round_trip():
    from vtrial.spec.drugs import Drug

    d = Drug.from_dict(
        {
            "name": "x",
            "ic50_nM": {"hERG": 100.0},
            "hill": {},
            "mw_g_mol": 300.0,
            "fu": 0.5,
            "herg_binding": {**SLOW, "vhalf_mv": -50.0},
        }
    )
    assert d.herg_binding == HergBinding(**SLOW, vhalf_mv=-50.0)
    assert Drug.from_dict({**d.to_dict()}) == d
    with pytest.raises(ValueError, match="ku_per_ms"):
        HergBinding(**{**SLOW, "ku_per_ms": 0.0}, vhalf_mv=-50.0)


def test_protocol_herg_model_switches_the_block():
    import copy

    import yaml

    from vtrial.spec.protocol import ProtocolError, parse_protocol

    spec = yaml.safe_load(example_protocol("quickstart").read_text())
    spec["drugs"] = {
        "cmpd": {
            "ic50_nM": {"hERG": 30.0},
            "mw_g_mol": 400.0,
            "fu": 0.1,
            "free_cmax_nM": 5.0,
            "herg_binding": {**SLOW, "vhalf_mv": -1.0},
        }
    }
    results = {}
    for model in ("static", "dynamic"):
        p = parse_protocol({**copy.deepcopy(spec), "herg_model": model})
        results[model] = (p.drug("cmpd").block(5.0)[0], p.drug("dofetilide").block(2.0)[0])
    assert parse_protocol(copy.deepcopy(spec)).herg_model == "static"
    from typing import get_args

    from vtrial.spec.drugs import HERG_MODELS
    from vtrial.spec.protocol import Protocol

    assert get_args(Protocol.model_fields["herg_model"].annotation) == HERG_MODELS
    assert results["static"][0] == pytest.approx(1 / (1 + 30.0 / 5.0))  # the inline kinetics ignored
    assert results["dynamic"][0] == pytest.approx(float(dynamic_block(5.0, HergBinding(**SLOW, vhalf_mv=-1.0))))
    assert abs(results["static"][1] - results["dynamic"][1]) > 0.01
    with pytest.raises(ProtocolError, match="herg_model"):
        parse_protocol({**copy.deepcopy(spec), "herg_model": "trapping"})


def test_kinetics_separate_cisapride_from_the_high_risk_hERG_blockers():
    """The finding the dynamic model is here for: with static IC50s cisapride (intermediate risk) blocks
    more hERG at its free Cmax than sotalol (high) and almost as much as dofetilide (high); with binding
    kinetics (cisapride unbinds and is not trapped) it blocks less than either."""
    h = CHANNELS.index("hERG")

    def at_cmax(name, model):
        d = get_drug(name, model)
        return d.block(d.free_cmax_nM)[h]

    assert at_cmax("cisapride", "static") > at_cmax("sotalol", "static")
    for high in ("sotalol", "dofetilide"):
        assert at_cmax("cisapride", "dynamic") < at_cmax(high, "dynamic") - 0.03
