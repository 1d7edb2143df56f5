"""The world model: autoencoder + denoiser + prior projection Π_ϕ, its checkpoint, and its sampler.

A checkpoint is data, not code: ``{"format", "version", "model_args", "state_dict"}`` saved with
``torch.save`` and read with ``torch.load(weights_only=True)``, which refuses pickled callables. It carries
its own model arguments, so loading needs no outside configuration.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vtrial.model.autoencoder import BeatAutoencoder
from vtrial.model.corpus import ACTION_DIM, COVARIATE_DIM, FS_HZ, N_SAMPLES, WINDOW_S, action_vector, covariate_vector
from vtrial.model.denoiser import Denoiser
from vtrial.model.diffusion import Schedule, ddim_sample

FORMAT = "vtrial.worldmodel"
VERSION = 2  # 2: covariates carry the patient's drug sensitivity
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "worldmodel.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, naming the file and what was expected."""


class WorldModel(nn.Module):
    def __init__(self, latent_dim: int = 32, channels: int = 32, width: int = 256, depth: int = 4,
                 n_samples: int = N_SAMPLES, n_leads: int = 1, diffusion_steps: int = 200, prior_input: bool = False,
                 residual: bool = False):
        super().__init__()
        if residual and not prior_input:
            raise ValueError("residual diffusion needs prior_input: the residual is taken from the prior beat's latent")
        self.model_args = dict(latent_dim=latent_dim, channels=channels, width=width, depth=depth,
                               n_samples=n_samples, n_leads=n_leads, diffusion_steps=diffusion_steps,
                               prior_input=prior_input)
        if residual:  # stored only when set, so checkpoints from before keep loading
            self.model_args["residual"] = True
        self.residual = residual
        self.autoencoder = BeatAutoencoder(n_samples, latent_dim, channels)
        self.denoiser = Denoiser(latent_dim, ACTION_DIM, COVARIATE_DIM, width, depth, prior_input=prior_input)
        self.projection = nn.Linear(latent_dim, latent_dim)  # Π_ϕ on the prior beat's latent
        nn.init.eye_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        self.register_buffer("z_mean", torch.zeros(latent_dim))
        self.register_buffer("z_std", torch.ones(latent_dim))
        if residual:  # the diffused variable: (z − z_prior − r_mean) / r_std
            self.register_buffer("r_mean", torch.zeros(latent_dim))
            self.register_buffer("r_std", torch.ones(latent_dim))
        self.schedule = Schedule(diffusion_steps)
        # sampler settings chosen for these weights on validation data (scripts/select_guidance.py --write),
        # stored in the checkpoint's extra["sampler"]; they override WorldModelSampler.SETTINGS
        self.sampler_settings: dict = {}

    def latent(self, beat: torch.Tensor) -> torch.Tensor:
        """Normalized latent of beats (B, T) → (B, D)."""
        return (self.autoencoder.encode(beat) - self.z_mean) / self.z_std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decoder(z * self.z_std + self.z_mean)

    def to_residual(self, z: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
        """Residual diffusion: a latent as its normalized departure from the prior beat's latent. What is
        left once the prior is known (recording variability, the morphology the prior lacks) is small next
        to the spread of post-dose latents; diffused in its own units it is learned at full resolution
        instead of sitting below the sampler's last noise level."""
        return (z - z_prior - self.r_mean) / self.r_std

    def from_residual(self, r: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
        return z_prior + self.r_mean + self.r_std * r

    def prior_latent(self, prior_beat: torch.Tensor) -> torch.Tensor:
        """p = Π_ϕ(e_EPK) in normalized latent space."""
        return self.projection(self.latent(prior_beat))

    def eps_fn(self, z_base, action, covariates, z_prior=None):
        """ε_θ(·, ·, c) for fixed conditioning; ``z_prior`` (normalized latent of e_EPK) is used only by a
        model built with ``prior_input``."""
        return lambda z_t, t: self.denoiser(z_t, t, z_base, action, covariates, z_prior)

    @torch.no_grad()
    def sample(self, baseline, prior, action, covariates, noise, n_sample_steps=20, eta=1.0, gamma=0.0,
               samples_per_unit: int = 1, temperature: float = 1.0):
        """Sample post-dose beats.

        baseline, prior (N, T) and action, covariates (N, ·) describe N units; each gets
        ``samples_per_unit`` = S samples (the conditioning is encoded once per unit). noise
        (n_sample_steps + 1, N·S, D), unit-major. ``temperature`` scales that noise (the initial z_T and
        every step's draw): for a Gaussian target the sampler is linear in its noise, so the samples'
        spread around their mean scales by it. The samples come out too narrow otherwise: DDIM with few
        steps under-disperses even with the exact denoiser (20 of 200 steps, η = 1: 0.81 of the SD of a
        Gaussian latent of SD 0.3), and a denoiser trained on the ε-MSE smooths the fine-scale variability
        it cannot resolve; a temperature above 1, chosen on validation data, restores the spread. Returns
        (beats (N·S, T), latents (N·S, D), prior latents (N, D)).
        """
        if temperature != 1.0:
            noise = noise * temperature
        s = samples_per_unit
        z_base = self.latent(baseline).repeat_interleave(s, dim=0)  # (N·S, D)
        z_prior = self.latent(prior)
        p = self.projection(z_prior)  # Π_ϕ(e_EPK), (N, D)
        zp = z_prior.repeat_interleave(s, dim=0)
        eps_fn = self.eps_fn(z_base, action.repeat_interleave(s, dim=0), covariates.repeat_interleave(s, dim=0), zp)
        guide = p.repeat_interleave(s, dim=0)
        if self.residual:
            guide = self.to_residual(guide, zp)
        z = ddim_sample(eps_fn, noise, self.schedule, n_sample_steps, eta, guide if gamma > 0 else None, gamma)
        if self.residual:
            z = self.from_residual(z, zp)
        return self.decode(z), z, p

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = dict(extra or {})
        if self.sampler_settings:
            extra.setdefault("sampler", dict(self.sampler_settings))
        torch.save({"format": FORMAT, "version": VERSION, "model_args": self.model_args,
                    "state_dict": self.state_dict(), "extra": extra}, path)
        return path


def load_checkpoint(path: str | Path, n_leads: int = 1, device: str = "cpu") -> WorldModel:
    """Load a checkpoint safely; raise ``CheckpointError`` naming the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain data "
                              f"(checkpoints are data, not code): {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {str(exc).splitlines()[0]}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vtrial world-model checkpoint (expected format {FORMAT!r})")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {blob.get('version')!r}, expected {VERSION}")
    args = dict(blob["model_args"])
    if args.get("n_leads") != n_leads:
        raise CheckpointError(f"{path}: model has {args.get('n_leads')} lead(s), expected {n_leads}")
    model = WorldModel(**args)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the architecture in its model_args {args}: "
                              f"{str(exc).splitlines()[0]}") from None
    model.sampler_settings = dict((blob.get("extra") or {}).get("sampler") or {})
    return model.to(device).eval()


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

    SETTINGS = {"eta": 1.0, "gamma": 0.01, "temperature": 1.0, "steps": 20.0}

    def __init__(self, samples_per_unit: int, checkpoint: str | Path | None = None, settings: dict | None = None,
                 device: str = "cpu", coef=None):
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
        from vtrial.physiology.ecgsyn import ecgsyn_beat
        from vtrial.physiology.epk import apply_block, default_coefficients
        from vtrial.sampler import unit_waves

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
            rng = np.random.default_rng([seed, int(units["arm_idx"][i]), int(units["patient"][i]), int(units["time_idx"][i])])
            noise[:, i] = rng.standard_normal((steps + 1, s, d), dtype=np.float32)

        def t32(x):
            return torch.as_tensor(np.asarray(x), dtype=torch.float32).to(self.device)

        with torch.inference_mode():
            beats, _, _ = self.model.sample(t32(baseline), t32(prior), t32(action), t32(cov),
                                            torch.as_tensor(noise.reshape(steps + 1, n * s, d), device=self.device),
                                            steps, self.settings["eta"], self.settings["gamma"], samples_per_unit=s,
                                            temperature=self.settings["temperature"])
        return beats, np.repeat(np.asarray(units["rr_s"]) * 1000.0, s)

    def sample(self, units: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        from vtrial.sampler import measured_rows

        beats, rr_ms = self.beats(units, seed)
        return measured_rows(units, self.s, beats, FS_HZ, rr_ms)
