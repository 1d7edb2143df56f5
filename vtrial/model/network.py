"""The world model's network: autoencoder + denoiser + prior projection Π_ϕ, and its sampling step.

Saved and loaded by ``vtrial.model.checkpoint``; run as a trial's sampler by ``vtrial.sampling.worldmodel``.
"""

from __future__ import annotations

import torch
from torch import nn

from vtrial.model.autoencoder import BeatAutoencoder
from vtrial.model.corpus import ACTION_DIM, COVARIATE_DIM, N_SAMPLES
from vtrial.model.denoiser import Denoiser
from vtrial.model.diffusion import NoiseSchedule, ddim_sample


class WorldModel(nn.Module):
    def __init__(
        self,
        latent_dim: int = 32,
        channels: int = 32,
        width: int = 256,
        depth: int = 4,
        n_samples: int = N_SAMPLES,
        n_leads: int = 1,
        diffusion_steps: int = 200,
        prior_input: bool = False,
        residual: bool = False,
    ):
        super().__init__()
        if residual and not prior_input:
            raise ValueError("residual diffusion needs prior_input: the residual is taken from the prior beat's latent")
        self.model_args = dict(
            latent_dim=latent_dim,
            channels=channels,
            width=width,
            depth=depth,
            n_samples=n_samples,
            n_leads=n_leads,
            diffusion_steps=diffusion_steps,
            prior_input=prior_input,
        )
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
        self.schedule = NoiseSchedule(diffusion_steps)
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
    def sample(
        self,
        baseline,
        prior,
        action,
        covariates,
        noise,
        n_sample_steps=20,
        eta=1.0,
        gamma=0.0,
        samples_per_unit: int = 1,
        temperature: float = 1.0,
    ):
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
