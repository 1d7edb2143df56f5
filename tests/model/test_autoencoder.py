"""The beat autoencoder: shapes, a deterministic encoder, and seeded reparameterised draws."""

import torch

from vtrial.model.autoencoder import BeatAutoencoder


def test_shapes_and_seeded_draws():
    torch.manual_seed(0)
    ae = BeatAutoencoder(n_samples=300, latent_dim=8, channels=4)
    x = torch.randn(5, 300) * 0.1
    rec, mu, logvar = ae(x, torch.Generator().manual_seed(1))
    assert rec.shape == (5, 300) and mu.shape == logvar.shape == (5, 8)
    again, _, _ = ae(x, torch.Generator().manual_seed(1))
    other, _, _ = ae(x, torch.Generator().manual_seed(2))
    assert torch.equal(rec, again) and not torch.equal(rec, other)
    assert torch.equal(ae.encode(x), mu)  # encode is the mean, no draw
