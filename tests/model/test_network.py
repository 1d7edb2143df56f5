"""The network: batched sampling equals unit by unit; residual diffusion round-trips."""

import numpy as np
import pytest
import torch

from vtrial.model.checkpoint import load_checkpoint, save_checkpoint
from vtrial.model.corpus import make_pairs
from vtrial.model.train import TrainConfig, train


def test_batched_sampling_equals_single(tiny):
    model, _, _ = tiny
    pairs = make_pairs(3, seed=6)
    noise = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(1))
    together = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.0)[0]
    for i in range(3):
        one = model.sample(
            pairs.baseline[i : i + 1],
            pairs.prior[i : i + 1],
            pairs.action[i : i + 1],
            pairs.covariates[i : i + 1],
            noise[:, i : i + 1],
            5,
            1.0,
            0.0,
        )[0]
        torch.testing.assert_close(together[i : i + 1], one, rtol=1e-4, atol=1e-5)


def test_residual_diffusion_round_trips_and_samples_around_the_prior(tmp_path, tiny_config):
    """A residual model (``prior_input`` + ``residual``) diffuses the latent's normalized departure from
    the prior beat's: it trains, reloads to the same samples, and its samples decode from latents near
    the prior's (where an untrained model's residual ~ N(0, 1) puts them)."""
    cfg = tiny_config(
        ae_steps=40,
        diffusion_train_steps=40,
        prior_input=True,
        residual=True,
        map_spread=0.5,
    )
    model, history = train(cfg, log=lambda d: None)
    assert np.isfinite(history["final_loss"]) and model.model_args["residual"] is True
    assert (model.r_std > 0).all() and not torch.equal(model.r_std, torch.ones(8))
    path = save_checkpoint(model, tmp_path / "res.pt")
    again = load_checkpoint(path)
    pairs = make_pairs(4, seed=5)
    noise = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(0))
    a, z, _ = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.01)
    b = again.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.01)[0]
    assert torch.equal(a, b)
    with torch.no_grad():
        r = model.to_residual(z, model.latent(pairs.prior))
    torch.testing.assert_close(model.from_residual(r, model.latent(pairs.prior)), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prior_input"):
        train(TrainConfig(n_pairs=10, ae_steps=0, diffusion_train_steps=0, residual=True), log=lambda d: None)
