"""From samples to what users act on: tables, metrics and warnings of an analysis (no Ray, no files)."""

import numpy as np
import polars as pl
import pytest

from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sources.locate import load_cohort
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan
from vtrial.stats.analysis import analyse, fixed_exposure_arms, placebo_index, single_drug_arms

TRIAL = {
    "name": "analysis",
    "seed": 5,
    "cohort": {"size": 6},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
        {"name": "verapamil_2x", "drugs": [{"drug": "verapamil", "exposure": {"multiple_of_free_cmax": 2}}]},
    ],
    "schedule": {"times_h": [-0.5, 2.5, 6.0]},
    "sampling": {"samples_per_patient": 4, "sampler": "mechanistic"},
    "risk": {"bootstrap": 200},
}


def samples_of(d) -> pl.LazyFrame:
    p = parse_protocol(d)
    cohort, _ = load_cohort(p.cohort, p.seed)
    rows = MechanisticSampler(p.sampling.samples_per_patient).sample(UnitPlan(p, cohort).all(), p.seed)
    names = np.array([a.name for a in p.arms])
    return p, pl.DataFrame({"arm": names[rows["arm_idx"]], **rows}).lazy()


def test_arm_helpers():
    p = parse_protocol(TRIAL)
    assert placebo_index(p) == 0
    assert single_drug_arms(p) == {0: None, 1: "dofetilide", 2: "verapamil"}
    assert fixed_exposure_arms(p) == {2: ("verapamil", 2.0)}


def test_analysis_ranks_the_hERG_blocker_riskiest_and_reports_its_metrics():
    p, samples = samples_of(TRIAL)
    an = analyse(p, samples)
    assert an.patients["patient"].n_unique() == 6
    dof = an.summary.filter(pl.col("arm") == "dofetilide").row(0, named=True)
    assert dof["rank"] == 2 and dof["peak_ms"] > 10 and dof["endpoint"] == "ddqtcf_ms"  # rank 1 = safest
    assert an.metrics["score_ms.dofetilide"] == pytest.approx(dof["score_ms"])
    assert all(np.isfinite(v) for v in an.metrics.values())
    assert an.tdp is not None and an.tdp["drug"].to_list() == ["verapamil"]  # the fixed-exposure arm


def test_without_placebo_the_placebo_corrected_endpoints_are_absent_with_a_warning():
    d = {**TRIAL, "arms": TRIAL["arms"][1:]}
    p, samples = samples_of(d)
    an = analyse(p, samples)
    assert (an.summary["endpoint"] == "dqtcf_ms").all()
    assert any("placebo-corrected endpoints (ΔΔ) are absent" in w for w in an.warnings)
    assert any("TdP categories need ΔΔQTcF" in w for w in an.warnings)
