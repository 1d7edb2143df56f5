"""The ``mechanistic`` sampler: ECGSYN beats under Δ(block(t)) with between-patient sensitivity and
within-patient variability (settings and defaults in ``vtrial.spec.samplers``)."""

from __future__ import annotations

import numpy as np
import torch

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import EpkCoefficients, apply_block, default_coefficients
from vtrial.physiology.waves import Waves
from vtrial.sampling.beats import WINDOW_S, measured_rows, unit_waves
from vtrial.spec.samplers import SAMPLER_SETTINGS


class MechanisticSampler:
    """ECGSYN with Δ(block(t)), between-patient sensitivity and within-patient variability.

    Within-patient variability (``SETTINGS``, defaults in brackets): RR beat-to-beat log-SD ``rr_cv``
    [0.03], T-wave timing jitter ``t_jitter_ms`` [4], wave-width log-SD ``width_cv`` [0.03], wave-height
    log-SD ``height_cv`` [0.05], white noise ``noise_mv`` [0.005] (a median beat's residual noise).
    """

    SETTINGS = SAMPLER_SETTINGS["mechanistic"]

    def __init__(
        self,
        samples_per_unit: int,
        fs_hz: float = 500.0,
        settings: dict | None = None,
        coef: EpkCoefficients | None = None,
        device: str = "cpu",
    ):
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
            rng = np.random.default_rng(
                [seed, int(units["arm_idx"][i]), int(units["patient"][i]), int(units["time_idx"][i])]
            )
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
        params = type(params)(
            *(getattr(params, f).to(torch.float32).to(self.device) for f in ("theta_rad", "a", "b_rad", "rr_s"))
        )
        beats = ecgsyn_beat(params, self.fs_hz, WINDOW_S)
        beats = beats + torch.as_tensor(cfg["noise_mv"] * noise.reshape(n * s, n_t), device=beats.device)
        return beats, rr.numpy() * 1000.0

    def sample(self, units: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        beats, rr_ms = self.beats(units, seed)
        return measured_rows(units, self.s, beats, self.fs_hz, rr_ms)
