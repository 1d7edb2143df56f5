"""Calibration scores: a well-specified toy model is nominal; a too-confident one is caught."""

import numpy as np
import pytest

from vtrial.stats.scoring import calibration, crps_ensemble, crps_gaussian, interval_coverage, reliability_table


def toy(n=3000, s=200, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 3, n)
    truth = mu + rng.standard_normal(n)
    samples = mu[:, None] + spread * rng.standard_normal((n, s))
    return samples, truth


def test_well_specified_model_has_nominal_coverage_and_reliability():
    samples, truth = toy()
    scores, tables = calibration(samples, truth, {"gt_2": 2.0})
    assert scores["coverage90"] == pytest.approx(0.90, abs=0.02)
    assert scores["coverage50"] == pytest.approx(0.50, abs=0.03)
    rel = tables["gt_2"].drop_nulls()
    big = rel.filter(rel["n"] > 100)
    assert ((big["mean_predicted"] - big["observed_frequency"]).abs() < 0.08).all()


@pytest.mark.parametrize("s", [20, 64])
def test_coverage_of_a_calibrated_sampler_is_nominal_with_few_draws(s):
    # numpy's default quantiles would score 20 exchangeable draws’ 5–95 % range at ≈ 0.82, not 0.90
    samples, truth = toy(n=20000, s=s, seed=3)
    assert interval_coverage(samples, truth, 0.90) == pytest.approx(0.90, abs=0.01)
    assert interval_coverage(samples, truth, 0.50) == pytest.approx(0.50, abs=0.015)


def test_overconfident_model_undercovers_and_scores_worse():
    good, truth = toy()
    narrow, _ = toy(spread=0.3)
    s_good, _ = calibration(good, truth, {"gt_2": 2.0})
    s_narrow, _ = calibration(narrow, truth, {"gt_2": 2.0})
    assert s_narrow["coverage90"] < 0.6
    assert s_narrow["crps"] > s_good["crps"] and s_narrow["brier.gt_2"] > s_good["brier.gt_2"]


def test_crps_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((1, 20000))
    y = np.array([0.7])
    from scipy.stats import norm

    exact = y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi)
    assert crps_ensemble(samples, y)[0] == pytest.approx(exact[0], abs=0.01)
    assert crps_gaussian(np.zeros(1), np.ones(1), y)[0] == pytest.approx(exact[0], abs=1e-12)
    assert crps_gaussian(np.full(1, 3.0), np.full(1, 2.0), 3.0 + 2 * y)[0] == pytest.approx(2 * exact[0], abs=1e-12)


def test_reliability_table_counts_every_forecast():
    t = reliability_table(np.array([0.05, 0.15, 0.95, np.nan]), np.array([0, 1, 1, 0]), bins=10)
    assert t["n"].sum() == 3


def test_fair_crps_is_unbiased_for_the_sampled_distribution_with_few_draws():
    from scipy.stats import norm

    rng = np.random.default_rng(4)
    y = rng.standard_normal(40000)
    samples = rng.standard_normal((40000, 8))  # 8 draws of the true predictive distribution N(0, 1)
    exact = np.mean(y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi))
    assert np.mean(crps_ensemble(samples, y, fair=True)) == pytest.approx(exact, abs=0.006)
    # the empirical distribution's CRPS is larger by E|X − X'| / (2S) = (2/√π) / 16
    biased = np.mean(crps_ensemble(samples, y))
    assert biased - exact == pytest.approx(2 / np.sqrt(np.pi) / 16, abs=0.006)


def test_fair_crps_overstates_the_crps_of_draws_that_share_a_component():
    """The fair CRPS assumes independent draws: S draws in clusters of m that share part of their spread
    (in the ECGRDVQ benchmark, samples of one subject that share a draw of its drug sensitivity) make the
    pairs within a cluster too close, and E|X − X'| comes out small: the CRPS is overstated by
    ½ · (m − 1)/(S − 1) · (E|X − X'| − E|X − X'|within). Each draw of its own is unbiased."""
    from scipy.stats import norm

    rng = np.random.default_rng(5)
    n, s, m, rho = 40000, 64, 4, 0.9
    y = rng.standard_normal(n)
    exact = np.mean(y * (2 * norm.cdf(y) - 1) + 2 * norm.pdf(y) - 1 / np.sqrt(np.pi))
    shared = np.repeat(rng.standard_normal((n, s // m)), m, axis=1)  # marginally N(0, 1) still
    clustered = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal((n, s))
    independent = rng.standard_normal((n, s))
    bias = 0.5 * (m - 1) / (s - 1) * (2 / np.sqrt(np.pi)) * (1 - np.sqrt(1 - rho))
    assert np.mean(crps_ensemble(independent, y, fair=True)) == pytest.approx(exact, abs=0.004)
    assert np.mean(crps_ensemble(clustered, y, fair=True)) - exact == pytest.approx(bias, abs=0.004)
    assert bias > 0.015
