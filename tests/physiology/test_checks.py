"""Input checks name the parameter, the first bad index and its value."""

import math

import numpy as np
import pytest
import torch

from vtrial.physiology.checks import check_finite, check_fraction, check_nonnegative, check_positive


def test_the_first_bad_entry_is_named_with_its_index():
    with pytest.raises(ValueError, match=r"rr_s\[1, 2\] = nan is not finite"):
        check_finite("rr_s", np.array([[1.0, 1.0, 1.0], [1.0, 1.0, math.nan]]))
    with pytest.raises(ValueError, match=r"sigma_ms\[3\] = 0.0 must be > 0"):
        check_positive("sigma_ms", torch.tensor([1.0, 2.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match=r"dose = -1.0 must be >= 0"):
        check_nonnegative("dose", -1.0)
    with pytest.raises(ValueError, match=r"fu\[0\] = 1.5 must lie in \[0, 1\]"):
        check_fraction("fu", [1.5, 0.2])


def test_good_values_pass_and_infinity_is_not_positive():
    check_positive("x", [1e-9, 3.0])
    check_nonnegative("x", [0.0, 2.0])
    check_fraction("x", torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="is not finite"):
        check_positive("x", [math.inf])
