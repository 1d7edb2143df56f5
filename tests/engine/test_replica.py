"""Replica placement on (logical) GPUs, memory-sized sampler calls, lazily built units, part checks."""

import json

import numpy as np
import pytest
import torch

from vtrial.engine.cluster import start_local_ray
from vtrial.engine.replica import sample_in_chunks, units_per_call
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sources.locate import load_cohort
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan
from vtrial.trial import run_trial

SMALL = {
    "name": "placement",
    "seed": 11,
    "cohort": {"population": "healthy_adults", "size": 4},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "verapamil", "drugs": [{"drug": "verapamil", "dose": {"value": 120, "unit": "mg"}}]},
    ],
    "schedule": {"times_h": [-0.5, 1.0, 3.0]},
    "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
    "compute": {"replicas": 2, "cpus_per_replica": 1, "batch_size": 4},
}


@pytest.fixture(scope="module")
def two_logical_gpus():
    """Ray on loopback declaring two GPUs this machine does not have: placement is Ray's bookkeeping."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=4, num_gpus=2)
    yield
    ray.shutdown()


def _placement(tmp_path, name, **compute):
    p = parse_protocol({**SMALL, "compute": {**SMALL["compute"], **compute}})
    run_trial(p, out=tmp_path / name, progress=False, track=False)
    return json.loads((tmp_path / name / "run_info.json").read_text())["placement"]


def test_whole_gpu_replicas_land_on_distinct_gpus(two_logical_gpus, tmp_path):
    placed = _placement(tmp_path, "whole", replicas=2, gpus_per_replica=1)
    ids = [tuple(r["gpu_ids"]) for r in placed]
    assert len(ids) == 2 and all(len(i) == 1 for i in ids)
    assert len(set(ids)) == 2, ids  # one GPU each, not the same one
    assert {r["device"] for r in placed} == {"cpu"}  # no CUDA here: the replica falls back, still placed
    assert len({r["pid"] for r in placed}) == 2


def test_fractional_gpus_pack_replicas(two_logical_gpus, tmp_path):
    placed = _placement(tmp_path, "half", replicas=4, gpus_per_replica=0.5)
    ids = [tuple(r["gpu_ids"]) for r in placed]
    assert all(len(i) == 1 for i in ids)
    counts = {i: ids.count(i) for i in set(ids)}
    assert sorted(counts.values()) == [2, 2], counts  # two half-GPU replicas share each of the two GPUs


def test_units_per_call_follows_memory():
    # 64 samples of 600-value beats: 1.8 MB of working memory per unit
    assert units_per_call(16e9, 1.0, 64, 600) == int(16e9 * 0.5 // (64 * 600 * 48))
    assert units_per_call(16e9, 0.25, 64, 600) == units_per_call(4e9, 1.0, 64, 600)
    assert units_per_call(1e3, 1.0, 64, 600) == 1  # never zero


def _units():
    p = parse_protocol(SMALL)
    cohort, _ = load_cohort(p.cohort, p.seed)
    return p, cohort, UnitPlan(p, cohort)


def test_chunked_sampling_equals_one_call():
    p, _, plan = _units()
    units = plan.all()
    sampler = MechanisticSampler(3, 500.0)
    whole = sampler.sample(units, 5)
    keep = units["patient"] == 1
    chunked, kept, used = sample_in_chunks(sampler, units, 5, max_units=5, keep=keep)
    assert used == 5
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k], err_msg=k)
    beats, _ = sampler.beats(units, 5)  # the kept beats are the sampled ones of the kept units, in unit order
    np.testing.assert_array_equal(kept, beats.numpy()[np.repeat(keep, 3)].astype(np.float32))
    assert sample_in_chunks(sampler, units, 5, max_units=5)[1] is None


def test_out_of_memory_halves_the_chunk_and_loses_nothing():
    p, _, plan = _units()
    units = plan.all()
    inner = MechanisticSampler(2, 500.0)

    class Tight:  # raises like CUDA does when a call holds more than 3 units
        calls = []
        s, fs_hz = inner.s, inner.fs_hz

        def beats(self, u, seed):
            self.calls.append(len(u["patient"]))
            if len(u["patient"]) > 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return inner.beats(u, seed)

    tight = Tight()
    rows, _, used = sample_in_chunks(tight, units, 9, max_units=16)
    assert used == 2  # 16 → 8 → 4 → 2
    assert tight.calls[:3] == [16, 8, 4] and set(tight.calls[3:]) == {2}  # 24 units in 12 calls of 2
    assert len(tight.calls) == 3 + 12
    whole = inner.sample(units, 9)
    for k in whole:
        np.testing.assert_array_equal(whole[k], rows[k], err_msg=k)

    class Broken:
        s, fs_hz = 2, 500.0

        def beats(self, u, seed):
            raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        sample_in_chunks(Broken(), units, 9, max_units=16)
