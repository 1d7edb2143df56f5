"""Risk tables with known answers: simulated samples with a set ΔΔQTcF, no placebo, an all-invalid arm."""

import numpy as np
import polars as pl
import pytest

from vtrial.stats import risk


def simulated_samples(
    effects_ms: dict[str, float],
    n_patients=40,
    times_h=(0.0, 1.0, 2.0),
    s=8,
    seed=0,
    within_sd=5.0,
    between_sd=8.0,
    invalid_arms=(),
):
    """A crossover: every patient takes every arm; the arm's effect on QTcF (and J-Tpeak_c) at the last time."""
    rng = np.random.default_rng(seed)
    rows = []
    patient_base = 400 + 15 * rng.standard_normal(n_patients)
    for a, (arm, effect) in enumerate(effects_ms.items()):
        response = effect + between_sd * rng.standard_normal(n_patients)  # the patient's true response
        for t, time_h in enumerate(times_h):
            on = t == len(times_h) - 1
            for p in range(n_patients):
                q = patient_base[p] + (response[p] if on else 0.0) + within_sd * rng.standard_normal(s)
                rows.append(
                    pl.DataFrame(
                        {
                            "arm": arm,
                            "arm_idx": np.int32(a),
                            "patient": np.int32(p),
                            "time_idx": np.int32(t),
                            "time_h": time_h,
                            "conc_free_nM": 10.0 * effect * on,
                            "sample": np.arange(s, dtype=np.int32),
                            "qtcf_ms": q,
                            "jtpeakc_ms": q - 180,
                            "tpte_ms": 75 + rng.standard_normal(s),
                            "qrs_ms": 95 + rng.standard_normal(s),
                            "pr_ms": 160 + rng.standard_normal(s),
                            "hr_bpm": 60 + rng.standard_normal(s),
                            "valid": np.full(s, arm not in invalid_arms),
                            "reason": [("flat" if arm in invalid_arms else "")] * s,
                        }
                    )
                )
    return pl.concat(rows).lazy()


def tables(effects, placebo_idx=0, **kw):
    patients = risk.patient_table(simulated_samples(effects, **kw))
    arms = risk.arm_table(patients, placebo_idx, n_boot=400, seed=1)
    summary = risk.arm_summary(arms, patients, placebo_idx, aversion=1.0, n_boot=400, seed=1)
    return patients, arms, summary


def test_set_ddqtcf_recovered_within_its_ci_and_e14_verdicts():
    _, arms, summary = tables({"placebo": 0.0, "positive": 15.0, "null": 0.0}, n_patients=60)
    last = arms.filter(pl.col("time_idx") == 2)
    pos = last.filter(pl.col("arm") == "positive").row(0, named=True)
    # recovered to within 1.5 half-widths of its 90% CI (≈ 2.5 standard errors; nominal coverage is
    # tested over many trials below)
    for col in ("ddqtcf_ms", "ddjtpeakc_ms"):
        half = (pos[f"{col}_ci90_hi"] - pos[f"{col}_ci90_lo"]) / 2
        assert abs(pos[col] - 15.0) < 1.5 * half
        assert half < 4.0
    s = {r["arm"]: r for r in summary.iter_rows(named=True)}
    assert s["positive"]["e14_negative"] is False
    assert s["null"]["e14_negative"] is True
    assert s["placebo"]["mu_r_ms"] is None and s["placebo"]["rank"] is None
    assert s["null"]["rank"] == 1 and s["positive"]["rank"] == 2
    # variance split: the simulated within-patient SD is 5 ms
    assert s["positive"]["sigma_r_within_ms"] == pytest.approx(5.0, rel=0.15)


def test_ci_coverage_of_a_set_effect_is_nominal():
    hits = []
    for seed in range(60):
        _, arms, _ = tables({"placebo": 0.0, "drug": 12.0}, n_patients=20, s=4, seed=seed)
        r = arms.filter((pl.col("time_idx") == 2) & (pl.col("arm") == "drug")).row(0, named=True)
        hits.append(r["ddqtcf_ms_ci90_lo"] < 12.0 < r["ddqtcf_ms_ci90_hi"])
    assert 0.78 <= np.mean(hits) <= 0.99


def test_without_placebo_corrected_endpoints_are_absent_with_reason():
    _, arms, summary = tables({"a": 20.0, "b": 0.0}, placebo_idx=None)
    assert arms["ddqtcf_ms"].is_null().all()
    assert (arms["dd_absent_reason"] == risk.NO_PLACEBO).all()
    assert (summary["endpoint"] == "dqtcf_ms").all()
    assert summary.filter(pl.col("arm") == "a")["peak_ms"][0] == pytest.approx(20.0, abs=5.0)
    assert summary["e14_negative"].is_null().all()


def test_all_invalid_arm_gets_no_risk_number_and_a_warning():
    patients, arms, summary = tables({"placebo": 0.0, "broken": 30.0, "ok": 5.0}, invalid_arms=("broken",))
    b = summary.filter(pl.col("arm") == "broken").row(0, named=True)
    assert b["mu_r_ms"] is None and b["peak_ms"] is None and b["score_ms"] is None
    assert "unmeasurable" in b["warning"]
    assert arms.filter(pl.col("arm") == "broken")["dqtcf_ms"].is_null().all()
    comp = risk.comparisons(patients, summary, 0, n_boot=200, seed=0)
    assert "broken" not in comp["arm_a"].to_list() + comp["arm_b"].to_list()


def test_comparisons_order_arms_by_risk():
    patients, _, summary = tables({"placebo": 0.0, "high": 25.0, "low": 2.0}, n_patients=50)
    comp = risk.comparisons(patients, summary, 0, n_boot=500, seed=0)
    r = comp.filter((pl.col("arm_a") == "high") & (pl.col("arm_b") == "low")).row(0, named=True)
    assert r["mu_r_diff_ms"] == pytest.approx(23.0, abs=6.0)
    assert r["diff_ci90_lo_ms"] > 0 and r["p_a_safer"] < 0.01 and r["p_patient_a_safer"] < 0.2
    assert r["rank_a"] == 2 and r["rank_b"] == 1


def test_bootstrap_ci_of_categorical_incidence_brackets_it():
    _, arms, _ = tables({"placebo": 0.0, "drug": 40.0}, n_patients=60, between_sd=15.0)
    r = arms.filter((pl.col("arm") == "drug") & (pl.col("time_idx") == 2)).row(0, named=True)
    assert 0.3 < r["p_dqtcf_gt_30"] < 0.95
    assert r["p_dqtcf_gt_30_boot90_lo"] < r["p_dqtcf_gt_30"] < r["p_dqtcf_gt_30_boot90_hi"]
