"""The denoiser: its output has the latent's shape, and the prior's latent is an input only when asked."""

import torch

from vtrial.model.denoiser import Denoiser, timestep_embedding


def test_timestep_embedding_is_sinusoidal():
    e = timestep_embedding(torch.tensor([0, 10]), 8)
    assert e.shape == (2, 8)
    assert torch.equal(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_prior_input_changes_the_output_only_when_built_with_it():
    torch.manual_seed(0)
    args = dict(latent_dim=6, action_dim=10, covariate_dim=5, width=16, depth=1)
    z, t = torch.randn(3, 6), torch.tensor([1, 5, 9])
    base, action, cov = torch.randn(3, 6), torch.randn(3, 10), torch.randn(3, 5)
    blind, reads = Denoiser(**args), Denoiser(**args, prior_input=True)
    p1, p2 = torch.randn(3, 6), torch.randn(3, 6)
    assert blind(z, t, base, action, cov).shape == (3, 6)
    assert torch.equal(blind(z, t, base, action, cov, p1), blind(z, t, base, action, cov, p2))
    assert not torch.equal(reads(z, t, base, action, cov, p1), reads(z, t, base, action, cov, p2))
