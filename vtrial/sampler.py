"""Samplers: turn a batch of work units into S measured post-dose beats per unit.

The interface every sampler keeps (the world model will plug into the same slot):

    sampler.sample(units: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]

``units`` holds one row per (arm, patient, time) with ids, ``time_h``, ``conc_free_nM``, the block
fractions ``block`` (n, 7), the patient's baseline waves (``t_ms``, ``sigma_ms``, ``height_mv`` (n, 5),
``rr_s``) and drug ``sensitivity``; the result holds one row per unit × sample with the ids passed
through, ``sample`` and every measured interval with ``valid``/``reason``. Randomness comes from
``np.random.default_rng([seed, arm, patient, time])`` per unit, so a unit's samples never depend on
how units are batched or which replica runs them.
"""
from __future__ import annotations

import numpy as np
import torch

from vtrial.measure import INTERVALS, measure
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import EpkCoefficients, apply_block, default_coefficients
from vtrial.physiology.waves import Waves

ID_COLUMNS = ("arm_idx", "patient", "time_idx")
PASS_COLUMNS = ("time_h", "conc_free_nM")
WINDOW_S = (-0.4, 0.8)


def unit_waves(units: dict) -> Waves:
    """The patients' baseline waves of a batch of work units (float64)."""
    return Waves(*(torch.as_tensor(units[k], dtype=torch.float64) for k in ("t_ms", "sigma_ms", "height_mv", "rr_s")))


class MechanisticSampler:
    """ECGSYN with Δ(block(t)), between-patient sensitivity and within-patient variability.

    Within-patient variability (``SETTINGS``, defaults in brackets): RR beat-to-beat log-SD ``rr_cv``
    [0.03], T-wave timing jitter ``t_jitter_ms`` [4], wave-width log-SD ``width_cv`` [0.03], wave-height
    log-SD ``height_cv`` [0.05], white noise ``noise_mv`` [0.005] (a median beat's residual noise).
    """

    SETTINGS = {"rr_cv": 0.03, "t_jitter_ms": 4.0, "width_cv": 0.03, "height_cv": 0.05, "noise_mv": 0.005}

    def __init__(self, samples_per_unit: int, fs_hz: float = 500.0, settings: dict | None = None,
                 coef: EpkCoefficients | None = None, device: str = "cpu"):
        unknown = sorted(set(settings or {}) - set(self.SETTINGS))
        if unknown:
            raise ValueError(f"unknown sampler settings {unknown}; available: {', '.join(self.SETTINGS)}")
        self.s = samples_per_unit
        self.fs_hz = fs_hz
        self.settings = {**self.SETTINGS, **(settings or {})}
        self.coef = coef or default_coefficients()
        self.device = device

    def _drugged_waves(self, units: dict) -> Waves:
        return apply_block(unit_waves(units), units["block"], self.coef, units["sensitivity"])

    def beats(self, units: dict[str, np.ndarray], seed: int) -> tuple[torch.Tensor, np.ndarray]:
        """The S sampled beats of every unit, (n·S, T) mV, and their RR intervals (n·S,) ms."""
        n, s = len(units["patient"]), self.s
        w = self._drugged_waves(units)
        cfg = self.settings
        n_t = int(round((WINDOW_S[1] - WINDOW_S[0]) * self.fs_hz))
        z_rr = np.empty((n, s))
        z_t = np.empty((n, s))
        z_w = np.empty((n, s, 5))
        z_h = np.empty((n, s, 5))
        noise = np.empty((n, s, n_t), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng([seed, int(units["arm_idx"][i]), int(units["patient"][i]), int(units["time_idx"][i])])
            z_rr[i], z_t[i] = rng.standard_normal(s), rng.standard_normal(s)
            z_w[i], z_h[i] = rng.standard_normal((s, 5)), rng.standard_normal((s, 5))
            noise[i] = rng.standard_normal((s, n_t), dtype=np.float32)

        def rep(x):  # (n, ...) → (n·s, ...)
            return x.repeat_interleave(s, dim=0)

        rr = rep(w.rr_s) * torch.as_tensor(np.exp(cfg["rr_cv"] * z_rr).ravel())
        t = rep(w.t_ms).clone()
        t[:, 4] += torch.as_tensor(cfg["t_jitter_ms"] * z_t.ravel())
        sig = rep(w.sigma_ms) * torch.as_tensor(np.exp(cfg["width_cv"] * z_w.reshape(-1, 5)))
        h = rep(w.height_mv) * torch.as_tensor(np.exp(cfg["height_cv"] * z_h.reshape(-1, 5)))
        sampled = Waves(t, sig, h, rr)
        params = sampled.to_ecgsyn()
        params = type(params)(*(getattr(params, f).to(torch.float32).to(self.device) for f in ("theta_rad", "a", "b_rad", "rr_s")))
        beats = ecgsyn_beat(params, self.fs_hz, WINDOW_S)
        beats = beats + torch.as_tensor(cfg["noise_mv"] * noise.reshape(n * s, n_t), device=beats.device)
        return beats, rr.numpy() * 1000.0

    def sample(self, units: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        beats, rr_ms = self.beats(units, seed)
        return measured_rows(units, self.s, beats, self.fs_hz, rr_ms)


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
