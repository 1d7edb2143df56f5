"""Typical PK and its variability from concentration moments: recovers a known population."""

import numpy as np
import pytest

from vtrial.physiology.pk_population import fit_population_moments, simulate_mg_l

TIMES_H = np.array([0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 24.0])


def test_recovers_a_known_population_from_its_moments():
    theta = np.log([1.2, 20.0, 150.0, 1.0])
    theta[3] = 0.2  # the lag is on the linear scale
    omega = np.array([0.5, 0.25, 0.2])
    z = np.random.default_rng(123).standard_normal((3, 10000))  # the "study": other draws than the fit's
    conc = simulate_mg_l(theta, omega, z, 400.0, TIMES_H)
    start = theta + np.array([0.4, -0.3, 0.3, 0.1])
    th, w = fit_population_moments(TIMES_H, conc.mean(axis=0), conc.std(axis=0), 400.0, start, draws=1000)
    assert np.exp(th[:3]) == pytest.approx(np.exp(theta[:3]), rel=0.12)
    assert w[1:] == pytest.approx(omega[1:], abs=0.06)  # CL and V1: well identified by the moments
    assert w[0] == pytest.approx(omega[0], abs=0.2)  # ka: only the early times inform it


def test_a_population_without_variability_gets_small_omegas():
    theta = np.log([1.0, 10.0, 100.0, 1.0])
    theta[3] = 0.0
    conc = simulate_mg_l(theta, np.zeros(3), np.zeros((3, 1)), 100.0, TIMES_H)[0]
    th, w = fit_population_moments(TIMES_H, conc, np.zeros_like(conc), 100.0, theta + 0.2, draws=500)
    assert np.all(w < 0.05)
    assert np.exp(th[1]) == pytest.approx(10.0, rel=0.05)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="one length"):
        fit_population_moments(TIMES_H, np.ones(3), np.ones(3), 1.0, np.zeros(4))
    with pytest.raises(ValueError, match="theta0"):
        fit_population_moments(TIMES_H, np.ones(10), np.ones(10), 1.0, np.zeros(5))
