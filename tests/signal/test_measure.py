"""Batched measurement: known answers, linearity, flags for unmeasurable beats."""

import numpy as np
import pytest
import torch

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import INTERVALS, measure

FS = 500.0


def beats(w: Waves):
    return ecgsyn_beat(w.to_ecgsyn(), FS)


def shifted_t(w: Waves, d_ms: float) -> Waves:
    t = w.t_ms.clone()
    t[:, 4] += d_ms
    return w.replace(t_ms=t)


@pytest.mark.parametrize("d_ms", [10, 20, 40, 60, 80, 100, 120])
def test_qt_moves_linearly_with_t_wave(d_ms):
    """Shifting the T wave later by d ms moves QT by d ± 5 %."""
    w = Waves.typical(1)
    m0 = measure(beats(w), FS, 1000.0)
    m1 = measure(beats(shifted_t(w, d_ms)), FS, 1000.0)
    assert m1["qt_ms"][0] - m0["qt_ms"][0] == pytest.approx(d_ms, rel=0.05)
    assert m1["jtpeak_ms"][0] - m0["jtpeak_ms"][0] == pytest.approx(d_ms, rel=0.05)


def test_gaussian_t_wave_intervals_have_known_values():
    """For a Gaussian T (σ), the tangent T end lies ≈ 2σ after the peak; the peak sits where it was put."""
    w = Waves.typical(1)
    m = measure(beats(w), FS, 1000.0)
    assert m["valid"][0] and m["reason"][0] == ""
    sigma_t = float(w.sigma_ms[0, 4])
    assert m["tpte_ms"][0] == pytest.approx(2 * sigma_t, rel=0.06)
    r_to_tpeak = (m["tpeak_s"][0] - m["r_s"][0]) * 1000
    assert r_to_tpeak == pytest.approx(float(w.t_ms[0, 4]), abs=3.0)


def test_corrections_and_rates():
    w = Waves.typical(3).replace(rr_s=torch.tensor([0.6, 1.0, 1.2], dtype=torch.float64))
    m = measure(beats(w), FS, [600.0, 1000.0, 1200.0])
    rr_s = np.array([0.6, 1.0, 1.2])
    np.testing.assert_allclose(m["qtcf_ms"], m["qt_ms"] / rr_s ** (1 / 3))
    np.testing.assert_allclose(m["qtcb_ms"], m["qt_ms"] / rr_s**0.5)
    np.testing.assert_allclose(m["jtpeakc_ms"], m["jtpeak_ms"] / rr_s**0.58)
    np.testing.assert_allclose(m["hr_bpm"], [100.0, 60.0, 50.0])


def test_batch_equals_single():
    g = torch.Generator().manual_seed(0)
    w = Waves.typical(6)
    w = w.replace(t_ms=w.t_ms + 10 * torch.randn(6, 5, generator=g, dtype=torch.float64))
    together = measure(beats(w), FS, 1000.0)
    for i in range(6):
        single = measure(beats(w.index(slice(i, i + 1))), FS, 1000.0)
        for k in INTERVALS:
            np.testing.assert_allclose(together[k][i], single[k][0], rtol=1e-9, equal_nan=True)


def test_unmeasurable_beats_are_flagged_not_dropped():
    good = beats(Waves.typical(1))[0]
    flat = torch.zeros_like(good)
    nan = good.clone()
    nan[100] = float("nan")
    no_t = beats(
        Waves.typical(1).replace(height_mv=torch.tensor([[0.15, -0.12, 1.3, -0.3, 0.0]], dtype=torch.float64))
    )[0]
    batch = torch.stack([good, flat, nan, no_t])
    m = measure(batch, FS, 1000.0)
    assert len(m["valid"]) == 4
    assert m["valid"].tolist() == [True, False, False, False]
    assert m["reason"].tolist() == ["", "flat_line", "non_finite", "no_t_wave"]
    for k in ("qt_ms", "qtcf_ms", "tpte_ms"):
        assert np.isfinite(m[k][0]) and np.isnan(m[k][1:]).all()


def test_missing_p_wave_keeps_beat_valid_with_no_pr():
    h = torch.tensor([[0.0, -0.12, 1.3, -0.3, 0.35]], dtype=torch.float64)
    m = measure(beats(Waves.typical(1).replace(height_mv=h)), FS, 1000.0)
    assert m["valid"][0] and m["reason"][0] == "no_p_wave"
    assert np.isnan(m["pr_ms"][0]) and np.isfinite(m["qt_ms"][0])


def test_bad_shape():
    with pytest.raises(ValueError, match=r"beats must have shape \(B, T\)"):
        measure(np.zeros(10), FS, 1000.0)


@pytest.mark.parametrize("herg_block", [0.0, 0.3])
def test_white_noise_does_not_end_the_t_wave_early(herg_block):
    """5 µV of white noise (a median beat's residual) on a normal and on a drug-flattened T wave: the
    steepest slope of a noisy limb must not be a noise spike (it used to cost 8 and 19 ms of QT)."""
    from vtrial.physiology.epk import apply_block, default_coefficients

    w = Waves.typical(200, 1.0)
    block = np.zeros((200, 7))
    block[:, 0] = herg_block
    w = apply_block(w, block, default_coefficients(), np.ones(200))
    clean = ecgsyn_beat(w.to_ecgsyn(), 500, (-0.4, 0.8)).double()
    noisy = clean + torch.as_tensor(0.005 * np.random.default_rng(0).standard_normal(clean.shape))
    m0, m = measure(clean, 500, 1000.0), measure(noisy, 500, 1000.0)
    assert abs(np.nanmean(m["qt_ms"] - m0["qt_ms"])) < 3
    assert np.nanstd(m["qt_ms"] - m0["qt_ms"]) < 3
    assert abs(np.nanmean(m["pr_ms"] - m0["pr_ms"])) < 2


def test_t_end_is_not_taken_from_the_next_p_wave():
    """A low, broad T at 74 bpm whose tail meets the next beat's P (MIT-BIH record 100's shape)."""
    w = Waves.typical(1, 0.811)
    h = w.height_mv.clone()
    h[:, 4], h[:, 0] = 0.083, 0.105
    t, s = w.t_ms.clone(), w.sigma_ms.clone()
    t[:, 4], s[:, 4] = 363.0, 50.0
    w = w.replace(t_ms=t, sigma_ms=s, height_mv=h)
    m = measure(ecgsyn_beat(w.to_ecgsyn(), 500, (-0.4, 0.8)), 500, 811.0)
    # the T wave ends ~2.5 σ after its peak, long before the next P (R + RR − PR ≈ 650 ms)
    assert 80 < m["tpte_ms"][0] < 160
