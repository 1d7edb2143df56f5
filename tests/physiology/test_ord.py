"""The O'Hara–Rudy cell: its action potential without block, and the direction block moves it."""

import numpy as np
import pytest

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ord import CIPA_V1_FACTORS, STEADY_STATE, conductance_scales, pace


def block(**b):
    v = np.zeros(len(CHANNELS))
    for k, x in b.items():
        v[CHANNELS.index(k)] = x
    return v


@pytest.fixture(scope="module")
def three_beats():
    cells = np.stack([block(), block(hERG=0.5), block(ICaL=0.5), block(INaL=0.5), block(IK1=0.5)])
    return pace(cells, 3)


def test_unblocked_cell_stays_at_its_published_steady_state(three_beats):
    apd, state = three_beats
    assert 255 < apd[-1, 0] < 285  # ORd endocardial APD90 at 1 Hz: about 270 ms
    assert abs(apd[-1, 0] - apd[0, 0]) < 1.0
    assert state["v"][0] == pytest.approx(STEADY_STATE["v"], abs=0.5)
    assert state["nai"][0] == pytest.approx(STEADY_STATE["nai"], abs=0.02)
    assert state["cai"][0] == pytest.approx(STEADY_STATE["cai"], rel=0.05)


def test_block_moves_repolarization_the_way_physiology_says(three_beats):
    apd = three_beats[0][-1]
    control, herg, ical, inal, ik1 = apd
    assert herg - control > 60  # IKr block delays repolarization most
    assert ical < control - 10 and inal < control  # inward currents blocked: earlier repolarization
    assert ik1 > control  # less outward current: later


def test_smaller_voltage_steps_move_the_drug_effect_little():
    cells = np.stack([block(), block(hERG=0.4, ICaL=0.2)])
    coarse = pace(cells, 1, dv_max_mV=0.5)[0][-1]
    fine = pace(cells, 1, dv_max_mV=0.1)[0][-1]
    assert abs((coarse[1] - coarse[0]) - (fine[1] - fine[0])) < 1.0
    assert np.all(np.abs(coarse - fine) < 2.0)


def test_conductance_scales_and_bad_block():
    s = conductance_scales(np.array([block(hERG=0.25)]), CIPA_V1_FACTORS)
    assert s["hERG"][0] == pytest.approx(1.013 * 0.75) and s["INa"][0] == 1.0 and s["INaL"][0] == pytest.approx(2.661)
    with pytest.raises(ValueError, match="shape"):
        conductance_scales(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        conductance_scales(np.array([block(hERG=1.0)]))
