"""The samplers a protocol can name, and the settings each one takes (with their defaults).

This is the one list of samplers: the protocol validates ``sampling.sampler`` and ``sampling.settings``
against it, the CLI offers its names, and ``vtrial.sampling.registry`` binds each name to its class,
which reads its defaults from here.
"""

from __future__ import annotations

SAMPLER_SETTINGS: dict[str, dict[str, float]] = {
    # ECGSYN under Δ(block): within-patient variability of the sampled beats (see MechanisticSampler)
    "mechanistic": {"rr_cv": 0.03, "t_jitter_ms": 4.0, "width_cv": 0.03, "height_cv": 0.05, "noise_mv": 0.005},
    # the ECG world model: DDIM η, guidance γ, noise temperature and steps (a checkpoint may carry its own)
    "worldmodel": {"eta": 1.0, "gamma": 0.01, "temperature": 1.0, "steps": 20.0},
}
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_SETTINGS)
DEFAULT_SAMPLER = "worldmodel"


def unknown_settings(sampler: str, settings) -> list[str]:
    """The names in ``settings`` that ``sampler`` does not take, sorted."""
    return sorted(set(settings or {}) - set(SAMPLER_SETTINGS[sampler]))
