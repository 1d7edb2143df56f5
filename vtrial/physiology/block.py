"""Ion-channel block by the Hill equation, and independent binding of several drugs.

block_k(C) = 1 / (1 + (IC50_k / C_free)^h_k)  for each channel k (CiPA: Li et al. 2017), with the free
concentration C_free in nM. A channel whose IC50 is missing (NaN), zero or infinite is not blocked.
Several drugs bind independently, so a channel's unblocked fraction is the product of each drug's:
1 − block_k = Π_d (1 − block_{d,k}).
"""

from __future__ import annotations

import numpy as np

from vtrial.physiology.checks import check_nonnegative

CHANNELS = ("hERG", "ICaL", "INaL", "INa", "IKs", "Ito", "IK1")


def _no_block(ic50_nM: np.ndarray) -> np.ndarray:
    return ~np.isfinite(ic50_nM) | (ic50_nM <= 0)


def hill_block(conc_free_nM, ic50_nM, hill) -> np.ndarray:
    """Fraction of each channel blocked by one drug.

    Parameters
    ----------
    conc_free_nM : array (...,) free concentration, nM, >= 0.
    ic50_nM : (7,) IC50 per channel in ``CHANNELS`` order; NaN, 0 or inf = no block.
    hill : (7,) Hill coefficients (> 0 where the IC50 is given; NaN there is read as 1).

    Returns
    -------
    array (..., 7) of block fractions in [0, 1).
    """
    conc = np.asarray(conc_free_nM, dtype=float)
    check_nonnegative("conc_free_nM", conc)
    ic50 = np.asarray(ic50_nM, dtype=float)
    h = np.asarray(hill, dtype=float)
    if ic50.shape != (len(CHANNELS),) or h.shape != (len(CHANNELS),):
        raise ValueError(
            f"ic50_nM and hill must have shape ({len(CHANNELS)},) in order {CHANNELS}; got {ic50.shape} and {h.shape}"
        )
    none = _no_block(ic50)
    h = np.where(np.isnan(h), 1.0, h)
    bad = ~none & ~(h > 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"hill[{CHANNELS[k]}] = {float(h[k])!r} must be > 0")
    safe_ic50 = np.where(none, 1.0, ic50)
    c = conc[..., None]
    with np.errstate(divide="ignore"):
        ratio = np.where(c > 0, (safe_ic50 / np.where(c > 0, c, 1.0)) ** h, np.inf)
    frac = 1.0 / (1.0 + ratio)
    return np.where(none, 0.0, frac)


def combine_blocks(blocks) -> np.ndarray:
    """Block of each channel by several drugs binding independently: 1 − Π_d (1 − block_d), from each
    drug's own block array (..., 7) (e.g. ``Drug.block``)."""
    unblocked = 1.0
    for b in blocks:
        unblocked = unblocked * (1.0 - np.asarray(b, float))
    return 1.0 - np.asarray(unblocked, float)
