"""A pool of replicas on loopback Ray returns each batch once, with the rows and kept beats a direct call gives."""

import numpy as np
import pytest
import ray

from vtrial.engine.cluster import start_local_ray
from vtrial.engine.pool import ReplicaPool
from vtrial.sampling.beats import sample_keeping
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sources.locate import load_cohort
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan, batch_slices

P = {
    "name": "pool",
    "seed": 4,
    "cohort": {"size": 3},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dof", "drugs": [{"drug": "dofetilide", "exposure": {"multiple_of_free_cmax": 2}}]},
    ],
    "schedule": {"times_h": [-0.5, 2.0]},
    "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
    "compute": {"replicas": 2, "batch_size": 5},
}


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_every_batch_comes_back_once_as_a_direct_call_gives_it(local_ray):
    p = parse_protocol(P)
    cohort, _ = load_cohort(p.cohort, p.seed)
    plan = UnitPlan(p, cohort)
    slices = batch_slices(len(plan), p.compute.batch_size)
    pool = ReplicaPool(p, 2)
    placement = pool.placement()
    assert len(placement) == 2 and {w["device"] for w in placement} == {"cpu"} and placement[0]["fs_hz"] == 500.0

    def keep_of(units):
        keep = units["patient"] == 0
        return keep if keep.any() else None

    got = {
        index: (rows, beats)
        for index, rows, beats, _ in pool.run(range(len(slices)), lambda i: plan.batch(slices[i]), keep_of)
    }
    assert sorted(got) == list(range(len(slices)))
    smp = MechanisticSampler(2)
    for index, (rows, beats) in got.items():
        units = plan.batch(slices[index])
        want_rows, want_beats = sample_keeping(smp, units, p.seed, keep_of(units))
        for k in want_rows:
            np.testing.assert_array_equal(rows[k], want_rows[k], err_msg=k)
        if want_beats is None:
            assert beats is None
        else:
            np.testing.assert_array_equal(beats, want_beats)
