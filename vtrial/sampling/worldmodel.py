"""The ``worldmodel`` sampler: S post-dose beats per work unit from the ECG world model.

Same interface as the mechanistic sampler (``sample(units, seed)``, ``beats(units, seed)``); its
settings and their defaults are declared in ``vtrial.spec.samplers``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vtrial.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from vtrial.model.corpus import FS_HZ, WINDOW_S, action_vector, covariate_vector
from vtrial.model.network import WorldModel
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import apply_block, default_coefficients
from vtrial.sampling.beats import measured_rows, unit_waves
from vtrial.spec.samplers import SAMPLER_SETTINGS


def sampler_settings(model: WorldModel, settings: dict | None = None) -> dict:
    """The sampler settings for ``model``: WorldModelSampler.SETTINGS, overridden by those chosen for the
    checkpoint (``model.sampler_settings``), overridden by ``settings`` (entries that are None are skipped)."""
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    return {**WorldModelSampler.SETTINGS, **model.sampler_settings, **given}


class WorldModelSampler:
    """The ``worldmodel`` sampler: same interface as the mechanistic one (``sample(units, seed)``).

    Per unit: the patient's baseline beat and the prior beat e_EPK (ECGSYN under Δ(block) scaled by the
    patient's drug sensitivity) at the model's rate, the action from block and concentration, S samples from the diffusion model decoded and
    measured. Settings: ``eta`` [1.0], ``gamma`` [0.01], ``temperature`` [1.0], ``steps`` [20] — a
    checkpoint carries its own γ and temperature, chosen on validation drugs by
    ``scripts/select_guidance.py --write``, which override these; ``checkpoint`` a path; ``coef`` the Δ(block) map of
    the prior beat (default: the shipped one) — it steers the samples through the prior beat, which a
    model built with ``prior_input`` reads and trained on random maps follows.
    """

    SETTINGS = SAMPLER_SETTINGS["worldmodel"]

    def __init__(
        self,
        samples_per_unit: int,
        checkpoint: str | Path | None = None,
        settings: dict | None = None,
        device: str = "cpu",
        coef=None,
    ):
        unknown = sorted(set(settings or {}) - set(self.SETTINGS))
        if unknown:
            raise ValueError(f"unknown sampler settings {unknown}; available: {', '.join(self.SETTINGS)}")
        self.s = samples_per_unit
        self.model = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT, device=device)
        self.settings = sampler_settings(self.model, settings)
        self.device = device
        self.fs_hz = FS_HZ
        self.coef = coef

    @property
    def follows_map(self) -> bool:
        """Whether the model reads the prior beat (and so the map given as ``coef``) as an input."""
        return bool(self.model.model_args.get("prior_input"))

    def beats(self, units: dict[str, np.ndarray], seed: int) -> tuple[torch.Tensor, np.ndarray]:
        """The S sampled beats of every unit, (n·S, T) mV at the model's rate, and their RR (n·S,) ms."""
        n, s = len(units["patient"]), self.s
        steps = int(self.settings["steps"])
        d = self.model.model_args["latent_dim"]
        base = unit_waves(units)
        drugged = apply_block(base, units["block"], self.coef or default_coefficients(), units["sensitivity"])
        baseline = ecgsyn_beat(base.to_ecgsyn(), FS_HZ, WINDOW_S).float()
        prior = ecgsyn_beat(drugged.to_ecgsyn(), FS_HZ, WINDOW_S).float()
        conc = np.asarray(units["conc_free_nM"], float)
        action = action_vector(units["block"], conc, np.clip(units["time_h"], 0, None), conc / 10.0)
        cov = covariate_vector(units["female"], units["age_y"], units["weight_kg"], units["rr_s"], units["sensitivity"])
        noise = np.empty((steps + 1, n, s, d), dtype=np.float32)
        for i in range(n):
            rng = np.random.default_rng(
                [seed, int(units["arm_idx"][i]), int(units["patient"][i]), int(units["time_idx"][i])]
            )
            noise[:, i] = rng.standard_normal((steps + 1, s, d), dtype=np.float32)

        def t32(x):
            return torch.as_tensor(np.asarray(x), dtype=torch.float32).to(self.device)

        with torch.inference_mode():
            beats, _, _ = self.model.sample(
                t32(baseline),
                t32(prior),
                t32(action),
                t32(cov),
                torch.as_tensor(noise.reshape(steps + 1, n * s, d), device=self.device),
                steps,
                self.settings["eta"],
                self.settings["gamma"],
                samples_per_unit=s,
                temperature=self.settings["temperature"],
            )
        return beats, np.repeat(np.asarray(units["rr_s"]) * 1000.0, s)

    def sample(self, units: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        beats, rr_ms = self.beats(units, seed)
        return measured_rows(units, self.s, beats, FS_HZ, rr_ms)
