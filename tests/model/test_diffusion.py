"""Diffusion: the energy term and guidance pull toward the prior; λ0 = 0 is plain denoising."""

import pytest
import torch

from vtrial.model.diffusion import NoiseSchedule, ddim_sample, training_loss


def test_energy_guidance_pulls_toward_the_prior():
    """With a denoiser that knows nothing (ε̂ = 0), γ > 0 moves samples toward Π(e_EPK)."""
    sched = NoiseSchedule(50)
    p = torch.full((16, 4), 2.0)
    noise = torch.randn(11, 16, 4, generator=torch.Generator().manual_seed(2))
    free = ddim_sample(lambda z, t: torch.zeros_like(z), noise, sched, 10, eta=0.0)
    guided = ddim_sample(lambda z, t: torch.zeros_like(z), noise, sched, 10, eta=0.0, prior_latent=p, gamma=0.3)
    assert ((guided - p) ** 2).mean() < ((free - p) ** 2).mean()


def test_loss_with_lambda_zero_is_pure_denoising():
    z0, p = torch.randn(32, 4), torch.randn(32, 4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    eps_fn = lambda z, t: 0.5 * z  # noqa: E731
    l0, parts0 = training_loss(eps_fn, z0, p, NoiseSchedule(50), 0.0, g1)
    l1, parts1 = training_loss(eps_fn, z0, p, NoiseSchedule(50), 1.0, g2)
    assert float(l0) == pytest.approx(parts0["mse"], rel=1e-5)
    assert float(l1) == pytest.approx(parts1["mse"] + parts1["weighted_energy"], rel=1e-5) and float(l1) > float(l0)
