"""Effect-site concentrations from measured plasma concentrations (a study's PK samples) instead of a PK model.

A study that samples plasma at its ECG times tells each subject's exposure directly: the measured total
concentration C(t) (ng/mL) becomes free nM (× 1000 / MW × fu), the effect site follows it with rate ke0,

    dCe/dt = ke0 · (C(t) − Ce),   Ce(0) = 0,

with C(t) linear between samples and 0 at the dose (t = 0), solved exactly on each segment: for
C(t) = c0 + s·(t − t0),  Ce(t) = C(t) − s/ke0 + (Ce(t0) − c0 + s/ke0)·exp(−ke0·(t − t0)).
ke0 = ∞: Ce = C. This is what the concentration–QTc model reads (the concentration at the ECG), with the
hysteresis vtrial's map assumes. Pure computation (numpy).
"""

from __future__ import annotations

import math

import numpy as np


def free_nM(conc_ng_ml, mw_g_mol: float, fu: float) -> np.ndarray:
    """Total ng/mL → free nM."""
    return np.asarray(conc_ng_ml, float) * 1000.0 / mw_g_mol * fu


def effect_site(times_h, conc, ke0_per_h: float) -> np.ndarray:
    """Effect-site concentration at ``times_h`` (T,) h after the dose from plasma ``conc`` (..., T) at those
    times (same unit; times ≤ 0 are pre-dose and read 0)."""
    t, c = np.asarray(times_h, float), np.asarray(conc, float)
    if t.ndim != 1 or c.ndim == 0 or c.shape[-1] != t.size:
        raise ValueError(f"conc has shape {c.shape}; its last axis must match times_h ({t.size})")
    c = np.where(t > 0, c, 0.0)
    if np.any(np.diff(t) <= 0):
        raise ValueError("times_h must increase")
    if not ke0_per_h > 0:
        raise ValueError(f"ke0_per_h = {ke0_per_h!r} must be > 0 (inf: no delay)")
    if math.isinf(ke0_per_h):
        return c
    out = np.zeros_like(c)
    t_prev, c_prev, ce = 0.0, np.zeros(c.shape[:-1]), np.zeros(c.shape[:-1])
    for j in np.flatnonzero(t > 0):
        dt = t[j] - t_prev
        slope = (c[..., j] - c_prev) / dt
        ce = c[..., j] - slope / ke0_per_h + (ce - c_prev + slope / ke0_per_h) * math.exp(-ke0_per_h * dt)
        out[..., j] = ce
        t_prev, c_prev = t[j], c[..., j]
    return out
