"""The electrophysiological map Δ(block): ion-channel block → ECGSYN wave shifts → the prior beat e_EPK.

Physiology (docs/science.md; Johannesen et al. 2014): hERG (IKr) block delays and slows repolarization, so
the T wave comes later, wider and flatter (J-Tpeak, Tpeak-Tend and QT up); ICaL and INaL block shorten
early repolarization and offset hERG's J-Tpeak prolongation; IKs block adds to repolarization delay;
INa block widens the QRS and lengthens PR; ICaL block also slows AV conduction (PR up).

With b_k the block fraction of channel k, s(b) = b(1 + κ)/(b + κ) the response to hERG block (κ > 0:
saturating; κ → ±∞: linear; κ < −1: convex, each further blocked fraction prolonging more, as the
repolarization reserve runs out — with a Hill IC50 of slope 1, κ → −1 makes s ∝ b/(1 − b) ∝
concentration), e_hERG = s(b_hERG) and e_k = b_k otherwise, the map at RR = 1 s is

    m           = exp(−Σ_k c_k b_k)                          (inward-current block attenuates delay)
                  or, with ``relative_attenuation``, exp(−Σ_k c_k b_k / (b_hERG + 0.01)): the inward-current
                  block relative to the hERG block (the balance of the two, as "net block" metrics weigh it)
    ΔJ-Tpeak    = m · Σ_{k ∈ delaying} α_k e_k + Σ_{k ∉ delaying} α_k e_k     (ms)
    ΔTpeak-Tend = m · Σ_k β_k e_k                                           (ms)
    QRS × (1 + Σ_k q_k e_k),   ΔPR = Σ_k p_k e_k (ms),   T height × (1 − φ·e_hERG)

"Delaying" channels are the repolarizing K⁺ currents (hERG, IKs, IK1, Ito). The attenuation m encodes
repolarization reserve: the prolongation that a given IKr block produces shrinks when the inward
currents it must outlast (ICaL, INaL) are blocked too — the multichannel-block finding of the FDA study
(quinidine, ranolazine and verapamil prolong J-Tpeak less per unit hERG block than dofetilide does).

With ``ord_jtpeak_gain`` and ``ord_tpte_gain`` set, repolarization comes from a cell model instead of
per-channel terms: ΔJ-Tpeak = g_J · ΔAPD90(b), ΔTpeak-Tend = g_T · ΔAPD90(b), with ΔAPD90 the O'Hara–Rudy
cell's (CiPA's optimized version, ``vtrial.physiology.ord_surrogate``) under the whole block vector — the
balance of every current and their interactions come from physiology, and only the two gains (ms of
interval per ms of action potential) are fitted. QRS, PR and the T height keep their channel terms.

Repolarization shifts scale with heart rate as the corrections do: ΔJ-Tpeak × RR^0.58,
ΔTpeak-Tend × RR^(1/3). On the waves (``Waves``): the Q, R, S widths and offsets scale with the QRS,
the T wave moves by the J-point shift plus ΔJ-Tpeak, its SD grows by ΔTpeak-Tend / 2 (the tangent
Tpeak-Tend of a Gaussian T is ≈ 2σ), and the P wave moves earlier by ΔPR plus the QRS-onset shift.

The coefficients live in ``vtrial/data/epk_coefficients.json``, fitted by ``scripts/calibrate_epk.py``
on the FDA study ECGRDVQ (see that file's ``fitted`` block for data, method and residuals).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.checks import check_fraction
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.ord_surrogate import delta_apd90_ms
from vtrial.physiology.waves import Waves

HERG = CHANNELS.index("hERG")
DELAYING = ("hERG", "IKs", "IK1", "Ito")
RELATIVE_FLOOR = 0.01  # hERG block added under relative attenuation's ratio, so no block reads 0


@dataclass(frozen=True)
class EpkCoefficients:
    """Coefficients of Δ(block); dicts map channel names to the effect of full block."""

    jtpeak_ms: dict[str, float] = field(default_factory=dict)
    tpte_ms: dict[str, float] = field(default_factory=dict)
    qrs_fraction: dict[str, float] = field(default_factory=dict)
    pr_ms: dict[str, float] = field(default_factory=dict)
    attenuation: dict[str, float] = field(default_factory=dict)
    herg_saturation: float = math.inf
    t_flattening: float = 0.0
    relative_attenuation: bool = False
    ord_jtpeak_gain: float | None = None
    ord_tpte_gain: float | None = None
    fitted: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for name in ("jtpeak_ms", "tpte_ms", "qrs_fraction", "pr_ms", "attenuation"):
            unknown = sorted(set(getattr(self, name)) - set(CHANNELS))
            if unknown:
                raise ValueError(f"{name}: unknown channels {unknown}; known: {', '.join(CHANNELS)}")
        k = self.herg_saturation
        if not (k > 0 or k < -1):
            raise ValueError(f"herg_saturation = {k!r} must be > 0 (saturating; inf: linear) or < −1 (convex)")
        check_fraction("t_flattening", self.t_flattening)
        gains = (self.ord_jtpeak_gain, self.ord_tpte_gain)
        if (gains[0] is None) != (gains[1] is None) or not all(g is None or math.isfinite(g) for g in gains):
            raise ValueError(f"ord_jtpeak_gain, ord_tpte_gain = {gains}: give both (finite) or neither")

    @property
    def uses_ord(self) -> bool:
        """Repolarization from the ORd cell's ΔAPD90 rather than from per-channel terms."""
        return self.ord_jtpeak_gain is not None

    def vector(self, name: str) -> np.ndarray:
        d = getattr(self, name)
        return np.array([float(d.get(ch, 0.0)) for ch in CHANNELS])

    def to_dict(self) -> dict:
        return {
            "jtpeak_ms": self.jtpeak_ms,
            "tpte_ms": self.tpte_ms,
            "qrs_fraction": self.qrs_fraction,
            "pr_ms": self.pr_ms,
            "attenuation": self.attenuation,
            "herg_saturation": self.herg_saturation,
            "t_flattening": self.t_flattening,
            "relative_attenuation": self.relative_attenuation,
            "ord_jtpeak_gain": self.ord_jtpeak_gain,
            "ord_tpte_gain": self.ord_tpte_gain,
            "fitted": self.fitted,
        }

    @staticmethod
    def from_dict(d: dict) -> EpkCoefficients:
        return EpkCoefficients(**d)


@lru_cache(maxsize=1)
def default_coefficients() -> EpkCoefficients:
    """The calibrated coefficients shipped with the package."""
    text = resources.files("vtrial.data").joinpath("epk_coefficients.json").read_text()
    return EpkCoefficients.from_dict(json.loads(text))


def effective_block(block, coef: EpkCoefficients) -> np.ndarray:
    """Block fractions (..., 7) with hERG passed through the response shape s(b)."""
    e = np.array(block, dtype=float, copy=True)
    check_fraction("block", e)
    k = coef.herg_saturation
    if math.isfinite(k):
        b = e[..., HERG]
        e[..., HERG] = b * (1 + k) / (b + k)
    return e


def interval_shifts(block, coef: EpkCoefficients, rr_s) -> dict[str, np.ndarray]:
    """The map's intended interval changes for block (B, 7) at RR (B,) s: ms and a QRS scale."""
    e = effective_block(block, coef)
    rr = np.asarray(rr_s, float)
    b = np.asarray(block, float)
    if coef.uses_ord:
        d_apd = delta_apd90_ms(b)
        jtpeak, tpte = coef.ord_jtpeak_gain * d_apd, coef.ord_tpte_gain * d_apd
    else:
        inward = b @ coef.vector("attenuation")
        atten = np.exp(-(inward / (b[..., HERG] + RELATIVE_FLOOR) if coef.relative_attenuation else inward))
        jt = coef.vector("jtpeak_ms")
        delaying = np.isin(np.array(CHANNELS), DELAYING)
        jtpeak = atten * (e @ np.where(delaying, jt, 0.0)) + e @ np.where(delaying, 0.0, jt)
        tpte = atten * (e @ coef.vector("tpte_ms"))
    return {
        "jtpeak_ms": jtpeak * rr**0.58,
        "tpte_ms": tpte * rr ** (1 / 3),
        "qrs_scale": 1.0 + e @ coef.vector("qrs_fraction"),
        "pr_ms": e @ coef.vector("pr_ms"),
        "t_height_scale": 1.0 - coef.t_flattening * e[..., HERG],
    }


def apply_block(waves: Waves, block, coef: EpkCoefficients | None = None, sensitivity=None) -> Waves:
    """ψ ⊕ Δ(block): the waves of B patients under block fractions (B, 7).

    ``sensitivity`` (B,), optional: each patient's multiplier on the whole change (1 = the calibrated map).
    """
    coef = coef or default_coefficients()
    block = np.asarray(block, dtype=float)
    if block.shape != (waves.batch_size, len(CHANNELS)):
        raise ValueError(f"block has shape {block.shape}, expected ({waves.batch_size}, {len(CHANNELS)})")
    return apply_shifts(waves, interval_shifts(block, coef, waves.rr_s.numpy()), sensitivity)


def apply_shifts(waves: Waves, shifts: dict[str, np.ndarray], sensitivity=None) -> Waves:
    """The waves of B patients moved by interval changes in the layout of ``interval_shifts`` (each (B,)),
    scaled per patient by ``sensitivity`` (B,) when given."""
    d = {
        k: torch.as_tensor(np.asarray(shifts[k], float), dtype=waves.t_ms.dtype)
        for k in ("jtpeak_ms", "tpte_ms", "qrs_scale", "pr_ms", "t_height_scale")
    }
    t, s, h = waves.t_ms.clone(), waves.sigma_ms.clone(), waves.height_mv.clone()
    scale = d["qrs_scale"]
    # J point (≈ S peak + 2σ_S) and QRS onset (≈ Q peak − 2σ_Q) move with the QRS scale
    j_shift = (scale - 1) * (t[:, 3] + 2 * s[:, 3])
    onset_shift = (scale - 1) * (t[:, 1] - 2 * s[:, 1])
    t[:, 1] = t[:, 1] * scale
    t[:, 3] = t[:, 3] * scale
    s[:, 1:4] = s[:, 1:4] * scale[:, None]
    t[:, 4] = t[:, 4] + j_shift + d["jtpeak_ms"]
    s[:, 4] = (s[:, 4] + d["tpte_ms"] / 2).clamp(min=1.0)
    h[:, 4] = h[:, 4] * d["t_height_scale"]
    t[:, 0] = t[:, 0] + onset_shift - d["pr_ms"]
    if sensitivity is not None:
        k = torch.as_tensor(np.asarray(sensitivity, float), dtype=t.dtype)[:, None]
        t, s, h = (w0 + k * (w1 - w0) for w0, w1 in ((waves.t_ms, t), (waves.sigma_ms, s), (waves.height_mv, h)))
        s[:, 4] = s[:, 4].clamp(min=1.0)  # a narrowing T scaled past its floor by a sensitive patient
    return Waves(t, s, h, waves.rr_s)


def prior_beat(
    waves: Waves, block, coef: EpkCoefficients | None = None, fs_hz: float = 500.0, window_s=(-0.4, 0.8)
) -> torch.Tensor:
    """e_EPK = ECGSYN(ψ ⊕ Δ(block)) for B patients, (B, T) mV."""
    return ecgsyn_beat(apply_block(waves, block, coef).to_ecgsyn(), fs_hz, window_s)
