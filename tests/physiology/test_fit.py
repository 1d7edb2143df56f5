"""Fitting patients: least squares to beats, and beats with prescribed intervals."""

import numpy as np
import pytest
import torch

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.fit import fit_waves, waves_for_intervals
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import measure


def test_waves_for_intervals_hits_targets():
    targets = dict(
        rr_ms=[900.0, 1000.0, 800.0],
        pr_ms=[160.0, 140.0, 180.0],
        qrs_ms=[95.0, 90.0, 110.0],
        jtpeak_ms=[220.0, 200.0, 240.0],
        tpte_ms=[87.0, 80.0, 100.0],
    )
    w, m = waves_for_intervals(**targets, iterations=12)
    for k in ("pr_ms", "qrs_ms", "jtpeak_ms", "tpte_ms"):
        np.testing.assert_allclose(m[k], targets[k], atol=1.0)


def test_fit_recovers_beat_under_noise():
    g = torch.Generator().manual_seed(1)
    true = Waves.typical(4).replace(rr_s=torch.tensor([0.8, 1.0, 1.2, 0.9], dtype=torch.float64))
    true = true.replace(
        t_ms=true.t_ms + 5 * torch.randn(4, 5, generator=g, dtype=torch.float64),
        sigma_ms=true.sigma_ms * (1 + 0.1 * torch.randn(4, 5, generator=g, dtype=torch.float64)),
    )
    clean = ecgsyn_beat(true.to_ecgsyn(), 500.0).numpy()
    noise_mv = 0.01
    noisy = clean + noise_mv * np.random.default_rng(0).standard_normal(clean.shape)
    fitted, rms = fit_waves(noisy, 500.0, true.rr_s.numpy())
    assert np.all(rms <= 1.2 * noise_mv)  # residual is the noise, nothing more
    refit = ecgsyn_beat(fitted.to_ecgsyn(), 500.0).numpy()
    m_true = measure(clean, 500.0, true.rr_s.numpy() * 1000)
    m_fit = measure(refit, 500.0, true.rr_s.numpy() * 1000)
    np.testing.assert_allclose(m_fit["qt_ms"], m_true["qt_ms"], atol=4.0)


def test_bad_input():
    with pytest.raises(ValueError, match=r"rr_ms\[0\] = -900.0 must be > 0"):
        waves_for_intervals([-900.0], [160.0], [95.0], [220.0], [87.0])
