"""The ECG world model: a latent diffusion model of post-dose beats pulled toward the ECGSYN prior."""
