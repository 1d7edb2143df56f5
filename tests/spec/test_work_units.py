"""Work units: batches built on demand equal the whole table, whatever the arm cache."""

import numpy as np

from vtrial.sources.locate import load_cohort
from vtrial.spec.exposure import arm_exposure
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan, unit_table

PLAN = {
    "name": "plan",
    "seed": 11,
    "cohort": {"population": "healthy_adults", "size": 4},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "verapamil", "drugs": [{"drug": "verapamil", "dose": {"value": 120, "unit": "mg"}}]},
    ],
    "schedule": {"times_h": [-0.5, 1.0, 3.0]},
    "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
}


def _units():
    p = parse_protocol(PLAN)
    cohort, _ = load_cohort(p.cohort, p.seed)
    return p, cohort, UnitPlan(p, cohort)


def test_unit_plan_batches_equal_the_full_table():
    p, cohort, plan = _units()
    conc, block = zip(*(arm_exposure(p, arm, cohort.size) for arm in p.arms))
    full = unit_table(cohort, np.stack(conc), np.stack(block), p.schedule.times_h)
    assert len(plan) == len(full["patient"]) == 2 * 4 * 3
    plan = UnitPlan(p, cohort, cache_arms=1)  # every arm switch recomputes: same values
    for sl in (slice(0, 5), slice(5, 13), slice(13, 24)):
        part = plan.batch(sl)
        for k in full:
            np.testing.assert_array_equal(part[k], full[k][sl], err_msg=k)
    one = plan.patient(2)
    assert set(one["patient"]) == {2} and len(one["patient"]) == 2 * 3
