"""The denoiser ε_θ(z_t, t, c): an MLP with residual blocks, conditioned on the baseline beat's latent,
an action embedding (block fractions, free concentration, time since dose, dose) and covariates — and,
when built with ``prior_input``, on the prior beat e_EPK's latent too."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion steps t (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, x):
        return x + self.net(x)


class Denoiser(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        covariate_dim: int,
        width: int = 256,
        depth: int = 4,
        time_dim: int = 64,
        prior_input: bool = False,
    ):
        super().__init__()
        self.time_dim = time_dim
        self.prior_input = prior_input
        self.action = nn.Sequential(nn.Linear(action_dim, 64), nn.SiLU(), nn.Linear(64, 64))  # action embedding
        cond = latent_dim + 64 + covariate_dim + time_dim + (latent_dim if prior_input else 0)
        self.inp = nn.Linear(latent_dim + cond, width)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(depth)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))

    def forward(self, z_t, t, z_base, action, covariates, z_prior=None):
        """``z_prior``: the prior beat's latent, an input only when built with ``prior_input``."""
        parts = [z_base, self.action(action), covariates, timestep_embedding(t, self.time_dim)]
        if self.prior_input:
            parts.append(z_prior)
        c = torch.cat(parts, dim=1)
        h = self.inp(torch.cat([z_t, c], dim=1))  # (B, width)
        return self.out(self.blocks(h))  # (B, latent_dim)
