"""Hill block and combination arms."""

import numpy as np
import pytest

from vtrial.physiology.block import CHANNELS, combine_blocks, hill_block

NAN = float("nan")


def profile(herg=10.0, h=1.0):
    ic50 = np.full(len(CHANNELS), NAN)
    hill = np.full(len(CHANNELS), NAN)
    ic50[0], hill[0] = herg, h
    return ic50, hill


def test_half_block_at_ic50_and_hill_slope():
    ic50, hill = profile(10.0, 2.0)
    b = hill_block([10.0, 20.0, 0.0], ic50, hill)
    assert b.shape == (3, 7)
    assert b[0, 0] == pytest.approx(0.5)
    assert b[1, 0] == pytest.approx(1 / (1 + 0.5**2))
    assert b[2, 0] == 0.0
    assert np.all(b[:, 1:] == 0.0)  # missing IC50 = no block


def test_zero_ic50_means_no_block():
    ic50, hill = profile(0.0, 1.0)
    assert np.all(hill_block(100.0, ic50, hill) == 0.0)


def test_independent_binding_of_two_drugs():
    ic50_a, hill_a = profile(10.0)
    ic50_b, hill_b = profile(30.0)
    both = combine_blocks([hill_block(np.array([10.0]), ic50_a, hill_a), hill_block(np.array([30.0]), ic50_b, hill_b)])
    assert both[0, 0] == pytest.approx(1 - 0.5 * 0.5)


def test_bad_input():
    ic50, hill = profile(10.0, -1.0)
    with pytest.raises(ValueError, match=r"hill\[hERG\] = -1.0 must be > 0"):
        hill_block(1.0, ic50, hill)
    with pytest.raises(ValueError, match=r"conc_free_nM\[1\] = -1.0 must be >= 0"):
        hill_block([1.0, -1.0], *profile())
