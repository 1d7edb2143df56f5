"""What every sampler shares: measured rows laid out per sample, and the kept beats being the measured ones."""

import numpy as np

from vtrial.sampling.beats import ID_COLUMNS, measured_rows, sample_keeping, unit_waves
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sources.locate import load_cohort
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan

P = {
    "name": "b",
    "seed": 3,
    "cohort": {"size": 3},
    "arms": [{"name": "dof", "drugs": [{"drug": "dofetilide", "exposure": {"multiple_of_free_cmax": 3}}]}],
    "schedule": {"times_h": [-0.5, 2.0]},
    "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
}


def _units():
    p = parse_protocol(P)
    cohort, _ = load_cohort(p.cohort, p.seed)
    return UnitPlan(p, cohort).all()


def test_kept_beats_are_the_beats_the_rows_were_measured_on():
    units = _units()
    smp = MechanisticSampler(2)
    keep = units["patient"] == 1
    rows, kept = sample_keeping(smp, units, 7, keep)
    whole = smp.sample(units, 7)
    for k in whole:
        np.testing.assert_array_equal(rows[k], whole[k], err_msg=k)
    beats, rr_ms = smp.beats(units, 7)
    assert kept.dtype == np.float32 and kept.shape == (keep.sum() * 2, beats.shape[1])
    np.testing.assert_array_equal(kept, beats.numpy()[np.repeat(keep, 2)])
    again = measured_rows(
        {k: v[keep] for k, v in units.items()}, 2, beats[np.repeat(keep, 2)], smp.fs_hz, rr_ms[np.repeat(keep, 2)]
    )
    np.testing.assert_array_equal(again["qtcf_ms"], whole["qtcf_ms"][np.repeat(keep, 2)])
    assert sample_keeping(smp, units, 7, np.zeros_like(keep))[1] is None


def test_rows_repeat_the_unit_ids_per_sample():
    units = _units()
    rows = MechanisticSampler(2).sample(units, 1)
    n = len(units["patient"])
    assert rows["sample"].tolist() == [0, 1] * n
    for k in ID_COLUMNS:
        np.testing.assert_array_equal(rows[k], np.repeat(units[k], 2))
    assert unit_waves(units).batch_size == n
