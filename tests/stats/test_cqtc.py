"""Concentration–QTc: the mixed-effects fit recovers a known slope and the predicted effect at Cmax."""

import numpy as np
import polars as pl

from vtrial.stats.cqtc import cqtc_by_drug, fit_cqtc


def simulated(slope=0.08, trt=1.5, n=40, seed=0):
    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1, 2, 4, 8, 12])
    rows = []
    cmax = 100 * np.exp(0.3 * rng.standard_normal(n))
    base = 400 + 12 * rng.standard_normal(n)
    eta0, eta1 = 4 * rng.standard_normal(n), 0.01 * rng.standard_normal(n)
    time_effect = 3 * np.sin(times)  # diurnal-like, shared by placebo and drug
    for arm, on in ((0, 0), (1, 1)):
        for i in range(n):
            c = on * cmax[i] * (np.exp(-0.2 * times) - np.exp(-1.5 * times)) / 0.55
            d = (
                eta0[i]
                + (slope + eta1[i]) * c
                + trt * on
                + time_effect
                + 0.1 * (base[i] - 400)
                + 3 * rng.standard_normal(len(times))
            )
            rows.append(
                pl.DataFrame(
                    {
                        "patient": i,
                        "arm_idx": arm,
                        "time_idx": np.arange(1, len(times) + 1),
                        "conc_free_nM": c,
                        "dqtcf_ms_mean": d,
                        "qtcf_ms_base": base[i],
                        "trt": on,
                    }
                )
            )
    return pl.concat(rows), cmax


def test_cqtc_recovers_a_known_slope_and_effect_at_cmax():
    data, cmax = simulated()
    r = fit_cqtc(data)
    assert r["status"] == "ok"
    assert r["slope_ci90_lo"] < 0.08 < r["slope_ci90_hi"]
    assert abs(r["slope_ms_per_nM"] - 0.08) < 0.015
    peak = (
        data.filter(pl.col("trt") == 1).group_by("patient").agg(pl.col("conc_free_nM").max())["conc_free_nM"].to_numpy()
    )
    gm = float(np.exp(np.mean(np.log(peak))))
    assert abs(r["gm_cmax_free_nM"] - gm) < 1e-9
    truth = 1.5 + 0.08 * gm
    assert r["ddqtcf_at_gm_cmax_ci90_lo"] < truth < r["ddqtcf_at_gm_cmax_ci90_hi"]


def test_cqtc_flat_drug_has_a_slope_ci_around_zero():
    data, _ = simulated(slope=0.0, trt=0.0, seed=3)
    r = fit_cqtc(data)
    assert r["slope_ci90_lo"] < 0 < r["slope_ci90_hi"]


def test_cqtc_by_drug_reports_too_little_data_instead_of_a_number():
    data, _ = simulated(n=2)
    patients = data.filter(pl.col("time_idx") <= 2).with_columns(pl.col("arm_idx").cast(pl.Int32))
    out = cqtc_by_drug(patients, {0: None, 1: "x"}, 0)
    assert out["status"][0].startswith("too few") and out["slope_ms_per_nM"][0] is None
