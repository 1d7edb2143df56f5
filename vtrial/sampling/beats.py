"""What every sampler shares: the interface, the beat window, the patients' baseline waves of a batch
of work units, and the measured sample rows.

The interface every sampler keeps (``vtrial.sampling.registry`` lists them):

    sampler.beats(units: dict[str, np.ndarray], seed: int) -> (beats (n·S, T) mV, RR (n·S,) ms)
    sampler.sample(units, seed) -> dict[str, np.ndarray]    # measured_rows of those beats
    sampler.fs_hz                                            # the beats' sampling rate

``units`` holds one row per (arm, patient, time) with ids, ``time_h``, ``conc_free_nM``, the block
fractions ``block`` (n, 7), the patient's baseline waves (``t_ms``, ``sigma_ms``, ``height_mv`` (n, 5),
``rr_s``) and drug ``sensitivity``; the rows hold one row per unit × sample with the ids passed
through, ``sample`` and every measured interval with ``valid``/``reason``. Randomness comes from
``np.random.default_rng([seed, arm, patient, time])`` per unit, so a unit's samples never depend on
how units are batched or which replica runs them.
"""

from __future__ import annotations

import numpy as np
import torch

from vtrial.physiology.waves import Waves
from vtrial.signal.measure import INTERVALS, measure

ID_COLUMNS = ("arm_idx", "patient", "time_idx")
PASS_COLUMNS = ("time_h", "conc_free_nM")
WINDOW_S = (-0.4, 0.8)


def unit_waves(units: dict) -> Waves:
    """The patients' baseline waves of a batch of work units (float64)."""
    return Waves(*(torch.as_tensor(units[k], dtype=torch.float64) for k in ("t_ms", "sigma_ms", "height_mv", "rr_s")))


def measured_rows(units: dict, s: int, beats: torch.Tensor, fs_hz: float, rr_ms: np.ndarray) -> dict[str, np.ndarray]:
    """Measure the n·S sampled beats and lay them out as sample rows: unit ids passed through, ``sample``,
    every interval, ``valid`` and ``reason`` (unmeasurable beats kept and flagged)."""
    n = len(units["patient"])
    m = measure(beats.cpu(), fs_hz, rr_ms, window_start_s=WINDOW_S[0])
    out = {k: np.repeat(np.asarray(units[k]), s) for k in ID_COLUMNS + PASS_COLUMNS}
    out["sample"] = np.tile(np.arange(s, dtype=np.int32), n)
    for k in INTERVALS:
        out[k] = m[k].astype(np.float32)
    out["valid"] = m["valid"]
    out["reason"] = m["reason"]
    return out


def sample_keeping(
    sampler, units: dict[str, np.ndarray], seed: int, keep: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The sample rows of ``units`` (exactly ``sampler.sample``'s) and the sampled beats of the units
    where ``keep`` is true, (kept units · S, T) float32 mV, unit-major; ``None`` when none is kept. The
    beats are the very ones the rows were measured on: a report shows the trial's own samples."""
    beats, rr_ms = sampler.beats(units, seed)
    rows = measured_rows(units, sampler.s, beats, sampler.fs_hz, rr_ms)
    if keep is None or not np.any(keep):
        return rows, None
    per_sample = np.repeat(np.asarray(keep, bool), sampler.s)
    return rows, beats.detach().cpu().numpy()[per_sample].astype(np.float32)
