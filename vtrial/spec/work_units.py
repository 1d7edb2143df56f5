"""Work units of a trial, one per (arm, patient, time), in ``expand`` order (arm-major, then patient,
then time), and their batches.

``UnitPlan`` builds any batch of units on demand from the cohort and each arm's exposures (computed
once per arm and cached), so the driver holds the cohort and a few arms' exposures, never the whole
expanded trial: memory stays flat as the trial grows. ``unit_table`` builds every unit at once (small
trials, tests, the ECGRDVQ benchmark); both lay units out identically. Pure computation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from vtrial.spec.exposure import arm_exposure


def units_at(
    cohort,
    exposure: Callable[[int], tuple[np.ndarray, np.ndarray]],
    a_idx: np.ndarray,
    p_idx: np.ndarray,
    t_idx: np.ndarray,
    times_h,
    patient_ids=None,
) -> dict[str, np.ndarray]:
    """The units at (arm, patient, time) indices; ``exposure(arm)`` → (conc (N, T) free nM, block (N, T, 7)).
    ``patient``: the index, or ``patient_ids`` (e.g. a study's subject IDs, which then key each unit's
    randomness)."""
    a_idx, p_idx, t_idx = (np.asarray(x, np.int64) for x in (a_idx, p_idx, t_idx))
    conc = np.empty(len(a_idx))
    block = None
    for a in np.unique(a_idx):
        c, b = exposure(int(a))
        sel = a_idx == a
        conc[sel] = c[p_idx[sel], t_idx[sel]]
        if block is None:
            block = np.empty((len(a_idx), b.shape[-1]))
        block[sel] = b[p_idx[sel], t_idx[sel]]
    w = cohort.waves
    patient = p_idx.astype(np.int32) if patient_ids is None else np.asarray(patient_ids, np.int64)[p_idx]
    return {
        "arm_idx": a_idx.astype(np.int32),
        "patient": patient,
        "time_idx": t_idx.astype(np.int32),
        "time_h": np.asarray(times_h, float)[t_idx],
        "conc_free_nM": conc,
        "block": block if block is not None else np.empty((0, 7)),
        "t_ms": w.t_ms.numpy()[p_idx],
        "sigma_ms": w.sigma_ms.numpy()[p_idx],
        "height_mv": w.height_mv.numpy()[p_idx],
        "rr_s": w.rr_s.numpy()[p_idx],
        "sensitivity": cohort.sensitivity[p_idx],
        "female": (cohort.sex == "F").astype(np.float64)[p_idx],
        "age_y": cohort.age_y[p_idx],
        "weight_kg": cohort.weight_kg[p_idx],
    }


def unit_table(cohort, conc: np.ndarray, block: np.ndarray, times_h, patient_ids=None) -> dict[str, np.ndarray]:
    """Every work unit from a cohort and its exposures: ``conc`` (A, N, T) free nM, ``block`` (A, N, T, 7)."""
    idx = np.unravel_index(np.arange(conc.size), conc.shape)
    return units_at(cohort, lambda a: (conc[a], block[a]), *idx, times_h, patient_ids)


class UnitPlan:
    """The work units of a protocol and cohort, built batch by batch; arms' exposures are cached
    (``cache_arms`` of them), and a batch spans at most a few arms because units are arm-major."""

    def __init__(self, protocol, cohort, cache_arms: int = 4):
        self.protocol, self.cohort = protocol, cohort
        self.shape = (len(protocol.arms), cohort.size, len(protocol.schedule.times_h))
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_arms = cache_arms

    def __len__(self) -> int:
        return int(np.prod(self.shape))

    def exposure(self, arm: int) -> tuple[np.ndarray, np.ndarray]:
        if arm not in self._cache:
            self._cache[arm] = arm_exposure(self.protocol, self.protocol.arms[arm], self.cohort.size)
            while len(self._cache) > self._cache_arms:
                self._cache.popitem(last=False)
        self._cache.move_to_end(arm)
        return self._cache[arm]

    def units(self, flat_idx: np.ndarray) -> dict[str, np.ndarray]:
        a, p, t = np.unravel_index(np.asarray(flat_idx, np.int64), self.shape)
        return units_at(self.cohort, self.exposure, a, p, t, self.protocol.schedule.times_h)

    def batch(self, sl: slice) -> dict[str, np.ndarray]:
        return self.units(np.arange(sl.start, sl.stop))

    def patient(self, patient: int) -> dict[str, np.ndarray]:
        """Every unit of one patient (all arms and times)."""
        n_a, _, n_t = self.shape
        a, t = np.meshgrid(np.arange(n_a), np.arange(n_t), indexing="ij")
        return self.units(np.ravel_multi_index((a.ravel(), np.full(a.size, patient), t.ravel()), self.shape))

    def all(self) -> dict[str, np.ndarray]:
        return self.units(np.arange(len(self)))


def batch_slices(n_units: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n_units)) for i in range(0, n_units, batch_size)]


def take(units: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[sl]) for k, v in units.items()}
