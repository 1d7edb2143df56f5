"""Exposure of every (arm, patient, time): PK with inter-individual variability → free concentrations
→ combined ion-channel block. Pure computation on a validated protocol and its cohort.
"""

from __future__ import annotations

import zlib

import numpy as np

from vtrial.physiology.block import CHANNELS, combine_blocks
from vtrial.physiology.pk import DoseEvent, concentrations, regimen, sample_individuals

PK_STREAM = 0x9C0  # seed-sequence key of the PK variability draws


def _pk_rng(seed: int, drug: str) -> np.random.Generator:
    """One generator per drug, so patient i's PK never depends on which other drugs the trial has."""
    return np.random.default_rng([seed, PK_STREAM, zlib.crc32(drug.encode())])


def _doses(arm_drug) -> list[DoseEvent]:
    d = arm_drug
    route = d.route
    return regimen(
        d.dose.mg,
        route,
        start_h=d.start_h,
        interval_h=d.regimen.interval_h,
        count=d.regimen.count,
        duration_h=d.infusion_h or 0.0,
    )


def arm_exposure(protocol, arm, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(conc_free_nM (size, T) of the arm's first drug in plasma, block (size, T, 7) from all its drugs)."""
    times = np.asarray(protocol.schedule.times_h, float)
    n_t = len(times)
    if arm.placebo:
        return np.zeros((size, n_t)), np.zeros((size, n_t, len(CHANNELS)))
    plasma, blocks = [], []
    for d in arm.drugs:
        drug = protocol.drug(d.drug)
        if d.exposure is not None:
            level = (
                d.exposure.conc_free_nM
                if d.exposure.conc_free_nM is not None
                else d.exposure.multiple_of_free_cmax * drug.free_cmax_nM
            )
            c = np.where(times >= d.start_h, level, 0.0)
            c[0] = 0.0  # the first time is the pre-dose baseline
            c = np.broadcast_to(c, (size, n_t))
            plasma.append(c)
            blocks.append(drug.block(c))
        else:
            p = sample_individuals(drug.pk_params(), drug.variability(), size, _pk_rng(protocol.seed, d.drug))
            exp = concentrations(p, _doses(d), times)
            plasma.append(exp.conc_free_nM)
            blocks.append(drug.block(exp.conc_effect_free_nM))
    return np.asarray(plasma[0]), combine_blocks(blocks)
