"""Waves in clinical units: the conversion to ECGSYN's ψ is exact and invertible, and bad beats are named."""

import pytest
import torch

from vtrial.physiology.waves import TYPICAL_T_MS, Waves


def test_round_trip_through_ecgsyn_is_exact():
    w = Waves.typical(3)
    w = w.replace(rr_s=torch.tensor([0.8, 1.0, 1.2], dtype=torch.float64))
    back = Waves.from_ecgsyn(w.to_ecgsyn())
    for name in ("t_ms", "sigma_ms", "height_mv", "rr_s"):
        torch.testing.assert_close(getattr(back, name), getattr(w, name), rtol=1e-12, atol=1e-12)


def test_typical_beat_and_batch_size():
    w = Waves.typical(4)
    assert w.batch_size == 4 and w.t_ms.shape == (4, 5)
    assert w.t_ms[0].tolist() == list(TYPICAL_T_MS)
    assert w.to_ecgsyn().theta_rad[0, 2] == 0.0  # the R wave sits at phase 0


def test_validate_names_the_bad_field():
    w = Waves.typical(2)
    sig = w.sigma_ms.clone()
    sig[1, 4] = -1.0
    with pytest.raises(ValueError, match=r"sigma_ms\[1, 4\] = -1.0 must be > 0"):
        w.replace(sigma_ms=sig).validate()
