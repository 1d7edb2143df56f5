"""ΔAPD90 of the O'Hara–Rudy cell under multichannel block, from a small network fitted to its simulations.

The ORd model (``vtrial.physiology.ord``) answers "how much longer is the action potential under this
block?" with the balance of every current it contains: IKr block lengthens it, ICaL and INaL block shorten
it, IKs and Ito block add a little, and the effects interact (the same IKr block lengthens less when the
inward currents are blocked too). That is the structure a map fitted on a few drugs cannot learn from them
(each channel's term is informed by one drug); the cell model brings it from physiology.

Pacing the model to steady state takes seconds per block vector; a simulated trial needs it for every
unit and time. ``scripts/fit_ord_surrogate.py`` simulates a design of block vectors (the CiPA drugs'
block curves over concentration plus random multichannel blocks), and fits a 7→32→32→1 tanh network to
log(APD90 / APD90 without block). ``vtrial/data/ord_apd90.json`` holds the network, the control APD90,
the pacing and the fit's held-out error; ``vtrial/data/ord_apd90_design.csv`` the simulated design.
The design's domain (``vtrial.spec.drugs.drug_curve_blocks``, ``random_blocks``) keeps hERG block ≤ 0.9 on the drug
curves and ≤ 0.85 on random vectors, where the paced cell still repolarizes; beyond that the network
extrapolates, and the cell itself would be heading for repolarization failure. Pure computation (NumPy).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.checks import check_fraction

MAX_HERG_BLOCK_DRUGS, MAX_HERG_BLOCK_RANDOM = 0.9, 0.85


def random_blocks(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 7) multichannel block vectors: each channel unblocked with probability 0.35, else 0.9·u² (u
    uniform), hERG capped at ``MAX_HERG_BLOCK_RANDOM``."""
    out = np.empty((n, len(CHANNELS)))
    for i in range(n):  # row by row: the shipped design's draws
        out[i] = np.where(rng.random(len(CHANNELS)) < 0.35, 0.0, 0.9 * rng.random(len(CHANNELS)) ** 2)
    out[:, 0] = np.minimum(out[:, 0], MAX_HERG_BLOCK_RANDOM)
    return out


@lru_cache(maxsize=1)
def surrogate() -> dict:
    """The shipped surrogate: ``layers`` (weights, biases), ``apd90_control_ms``, ``beats``, ``cycle_ms``, ``fitted``."""
    d = json.loads(resources.files("vtrial.data").joinpath("ord_apd90.json").read_text())
    d["layers"] = [(np.asarray(w, float), np.asarray(b, float)) for w, b in d["layers"]]
    return d


def network(block, layers) -> np.ndarray:
    """The network's output log(APD90 / control) for block (..., 7), before centring at no block."""
    h = np.asarray(block, float)
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h[..., 0]


def delta_apd90_ms(block, model: dict | None = None) -> np.ndarray:
    """ΔAPD90 (ms) of the ORd endocardial cell at steady 1 Hz pacing under block fractions (..., 7) in
    ``CHANNELS`` order; exactly 0 without block."""
    m = model or surrogate()
    b = np.asarray(block, float)
    if b.shape[-1] != len(CHANNELS):
        raise ValueError(f"block must end in {len(CHANNELS)} channels {CHANNELS}; got shape {b.shape}")
    check_fraction("block", b)
    out = network(b, m["layers"]) - network(np.zeros(len(CHANNELS)), m["layers"])
    return m["apd90_control_ms"] * np.expm1(out)
