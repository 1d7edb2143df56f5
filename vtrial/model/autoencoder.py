"""VAE-style encoder/decoder between beats (B, 1, T) and latents (B, D), with 1-D convolutions."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, n_samples: int, latent_dim: int, channels: int = 32):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv1d(1, c, 7, stride=2, padding=3),
            nn.SiLU(),  # (B, c, T/2)
            nn.Conv1d(c, 2 * c, 5, stride=2, padding=2),
            nn.SiLU(),  # (B, 2c, T/4)
            nn.Conv1d(2 * c, 2 * c, 5, stride=2, padding=2),
            nn.SiLU(),  # (B, 2c, T/8)
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, n_samples)).numel()
        self.head = nn.Linear(flat, 2 * latent_dim)

    def forward(self, beat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(beat[:, None, :]).flatten(1)  # (B, 2c·T/8)
        mu, logvar = self.head(h).chunk(2, dim=1)  # (B, D) each
        return mu, logvar.clamp(-12, 6)


class Decoder(nn.Module):
    def __init__(self, n_samples: int, latent_dim: int, channels: int = 32):
        super().__init__()
        c = channels
        self.n_samples = n_samples
        self.length = (n_samples + 7) // 8
        self.c = 2 * c
        self.fc = nn.Linear(latent_dim, self.c * self.length)
        self.deconv = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose1d(2 * c, 2 * c, 4, stride=2, padding=1),
            nn.SiLU(),  # (B, 2c, 2L)
            nn.ConvTranspose1d(2 * c, c, 4, stride=2, padding=1),
            nn.SiLU(),  # (B, c, 4L)
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1),
            nn.SiLU(),  # (B, c, 8L)
            nn.Conv1d(c, 1, 7, padding=3),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.c, self.length)  # (B, 2c, L)
        return self.deconv(h)[:, 0, : self.n_samples]  # (B, T)


class BeatAutoencoder(nn.Module):
    """E: beat → (μ, log σ²); D: latent → beat. Beats in mV, (B, T)."""

    def __init__(self, n_samples: int = 300, latent_dim: int = 32, channels: int = 32):
        super().__init__()
        self.encoder = Encoder(n_samples, latent_dim, channels)
        self.decoder = Decoder(n_samples, latent_dim, channels)

    def encode(self, beat: torch.Tensor) -> torch.Tensor:
        return self.encoder(beat)[0]

    def forward(self, beat: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encoder(beat)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + (0.5 * logvar).exp() * eps
        return self.decoder(z), mu, logvar
