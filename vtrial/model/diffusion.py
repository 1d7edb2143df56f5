"""Noise schedule, the energy-regularized training loss, and the DDIM sampler with energy guidance.

Symbols (Ho et al. 2020; Song et al. 2021 "DDIM"; the ECG-WM paper's energy term):

    z_0        clean latent of the post-dose beat          ᾱ_t   cumulative signal fraction at step t
    z_t        = √ᾱ_t z_0 + √(1−ᾱ_t) ε,  ε ~ N(0, I)       ε̂    ε_θ(z_t, t, c), the denoiser
    ẑ_0        = (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t                p     Π_ϕ(e_EPK), the prior beat's latent
    E_ϕ(ẑ_0)   = ‖ẑ_0 − p‖² / D                             (mean over the D latent dimensions)

Training loss (one Monte-Carlo draw of t and ε per example):

    L = ‖ε − ε̂‖² / D + λ(t) · E_ϕ(ẑ_0),     λ(t) = λ_0 · ᾱ_t

λ(t) ∝ ᾱ_t trusts the energy only where ẑ_0 is informative: at high noise (ᾱ_t → 0) ẑ_0 is dominated by
the amplified error of ε̂ and pulling it toward the prior would only add variance. λ_0 = 0 (and γ = 0
at sampling) is the ablation without the prior.

This module never imports the network: the denoiser arrives as a callable ``eps_fn(z_t, t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """Cosine schedule (Nichol & Dhariwal 2021) over ``n_steps`` training steps."""

    n_steps: int = 200

    def alpha_bar(self, device=None) -> torch.Tensor:
        s = 0.008
        t = torch.arange(self.n_steps + 1, dtype=torch.float64, device=device) / self.n_steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        ab = (f / f[0])[1:]
        return ab.clamp(1e-5, 0.9999).to(torch.float32)  # (n_steps,), ᾱ_t for t = 0..n_steps−1


def energy(z0_hat: torch.Tensor, prior_latent: torch.Tensor) -> torch.Tensor:
    """E_ϕ(ẑ_0) = ‖ẑ_0 − Π_ϕ(e_EPK)‖² / D per example, (B,)."""
    return ((z0_hat - prior_latent) ** 2).mean(dim=1)


def training_loss(
    eps_fn,
    z0: torch.Tensor,
    prior_latent: torch.Tensor,
    schedule: NoiseSchedule,
    lambda0: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """L = E‖ε − ε̂‖²/D + λ(t)·E_ϕ(ẑ_0) with λ(t) = λ_0·ᾱ_t; returns (loss, parts)."""
    b = z0.shape[0]
    ab_all = schedule.alpha_bar(z0.device)
    t = torch.randint(0, schedule.n_steps, (b,), generator=generator, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device)
    ab = ab_all[t][:, None]
    z_t = ab.sqrt() * z0 + (1 - ab).sqrt() * eps
    eps_hat = eps_fn(z_t, t)
    mse = ((eps - eps_hat) ** 2).mean(dim=1)
    z0_hat = (z_t - (1 - ab).sqrt() * eps_hat) / ab.sqrt()
    e = energy(z0_hat, prior_latent)
    lam = lambda0 * ab[:, 0]
    loss = (mse + lam * e).mean()
    with torch.no_grad():
        parts = {"mse": float(mse.mean()), "energy": float(e.mean()), "weighted_energy": float((lam * e).mean())}
    return loss, parts


def ddim_timesteps(schedule: NoiseSchedule, n_sample_steps: int) -> list[int]:
    return torch.linspace(schedule.n_steps - 1, 0, n_sample_steps).round().long().tolist()


@torch.no_grad()
def ddim_sample(
    eps_fn,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
    n_sample_steps: int,
    eta: float = 0.0,
    prior_latent: torch.Tensor | None = None,
    gamma: float = 0.0,
    clip: float = 4.0,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) with an optional energy-guidance step on ẑ_0.

    Parameters
    ----------
    eps_fn : callable (z_t (B, D), t (B,)) → ε̂ (B, D).
    noise : (n_sample_steps + 1, B, D) standard normal draws — the initial z_T and each step's fresh
        noise — passed in so that every sample's randomness comes from its own seed.
    eta : stochasticity (0: deterministic DDIM, 1: DDPM-like ancestral variance).
    prior_latent, gamma : guidance ẑ_0 ← ẑ_0 − γ ∇‖ẑ_0 − p‖² = ẑ_0 − 2γ(ẑ_0 − p) (0 < γ < 0.5).
    clip : ẑ_0 is clipped to [−clip, clip] (latents are normalized to unit variance): at the first steps
        ᾱ_t ≈ 0 and ẑ_0 = (z_t − √(1−ᾱ_t) ε̂)/√ᾱ_t amplifies ε̂'s error a hundredfold (``clip_sample`` in
        diffusers' DDIM).

    Returns
    -------
    (B, D) sampled clean latents.
    """
    ab_all = schedule.alpha_bar(noise.device)
    steps = ddim_timesteps(schedule, n_sample_steps)
    z = noise[0]
    for i, t in enumerate(steps):
        ab_t = ab_all[t]
        ab_prev = ab_all[steps[i + 1]] if i + 1 < len(steps) else torch.tensor(1.0, device=noise.device)
        tt = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
        eps = eps_fn(z, tt)
        z0 = ((z - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()).clamp(-clip, clip)
        if gamma > 0 and prior_latent is not None:
            z0 = z0 - gamma * 2.0 * (z0 - prior_latent)  # one gradient step on ‖ẑ_0 − p‖² per dimension
        eps = (z - ab_t.sqrt() * z0) / (1 - ab_t).sqrt()  # the ε consistent with the (clipped, guided) ẑ_0
        sigma = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).clamp(min=0).sqrt()
        direction = (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
        z = ab_prev.sqrt() * z0 + direction + sigma * noise[i + 1]
    return z
