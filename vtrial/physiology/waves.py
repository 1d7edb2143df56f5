"""A patient's beat described in clinical units, and its conversion to ECGSYN's ψ.

ECGSYN's parameters are phases and widths in radians and dimensionless a_i; physiology speaks of
milliseconds and millivolts. ``Waves`` holds, for each wave i ∈ (P, Q, R, S, T):

- ``t_ms``: time of the wave's peak relative to the R wave (phase 0), ms;
- ``sigma_ms``: the Gaussian's SD in time, ms;
- ``height_mv``: the Gaussian's peak height, mV (the ECGSYN term a_i b_i² / ω times ``MV_PER_Z``);

plus ``rr_s``. With ω = 2π/RR: θ_i = ω t_i, b_i = ω σ_i, a_i = height_i ω / (b_i² · MV_PER_Z).
The mapping is exact and invertible, so ECGSYN is unchanged; only its coordinates are clinical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from vtrial.physiology.checks import check_finite, check_positive
from vtrial.physiology.ecgsyn import MV_PER_Z, EcgsynParams

# A healthy adult lead-II beat at RR = 1 s, shaped to the pre-dose means of the FDA study ECGRDVQ
# (PR ≈ 160 ms, QRS ≈ 95 ms, J-Tpeak ≈ 220 ms, Tpeak-Tend ≈ 85 ms, QT ≈ 400 ms); heights as McSharry's
# defaults (P 0.33, Q −0.22, R 1.31, S −0.33, T 0.5 mV). ``fit.waves_for_intervals`` tunes them per patient.
TYPICAL_T_MS = (-190.0, -36.0, 0.0, 36.0, 270.0)
TYPICAL_SIGMA_MS = (28.0, 12.0, 13.0, 12.0, 42.0)
TYPICAL_HEIGHT_MV = (0.15, -0.12, 1.3, -0.3, 0.35)


@dataclass(frozen=True)
class Waves:
    """Batch of beats in clinical units: (B, 5) ``t_ms``, ``sigma_ms``, ``height_mv``; (B,) ``rr_s``."""

    t_ms: torch.Tensor
    sigma_ms: torch.Tensor
    height_mv: torch.Tensor
    rr_s: torch.Tensor

    def validate(self) -> Waves:
        check_finite("t_ms", self.t_ms)
        check_positive("sigma_ms", self.sigma_ms)
        check_finite("height_mv", self.height_mv)
        check_positive("rr_s", self.rr_s)
        return self

    @property
    def batch_size(self) -> int:
        return int(self.rr_s.shape[0])

    def to_ecgsyn(self) -> EcgsynParams:
        """Exact conversion to ECGSYN parameters ψ."""
        omega = (2 * math.pi / self.rr_s)[:, None]  # rad/s
        theta = omega * self.t_ms / 1000.0
        b = omega * self.sigma_ms / 1000.0
        a = self.height_mv * omega / (b**2 * MV_PER_Z)
        return EcgsynParams(theta_rad=theta, a=a, b_rad=b, rr_s=self.rr_s)

    @staticmethod
    def from_ecgsyn(p: EcgsynParams) -> Waves:
        omega = (2 * math.pi / p.rr_s)[:, None]
        return Waves(
            t_ms=p.theta_rad / omega * 1000.0,
            sigma_ms=p.b_rad / omega * 1000.0,
            height_mv=p.a * p.b_rad**2 / omega * MV_PER_Z,
            rr_s=p.rr_s,
        )

    def replace(self, **changes) -> Waves:
        return replace(self, **changes)

    def index(self, idx) -> Waves:
        return Waves(self.t_ms[idx], self.sigma_ms[idx], self.height_mv[idx], self.rr_s[idx])

    @staticmethod
    def typical(batch: int = 1, rr_s: float = 1.0, dtype=torch.float64) -> Waves:
        def rep(v):
            return torch.tensor(v, dtype=dtype).expand(batch, -1).clone()

        return Waves(
            rep(TYPICAL_T_MS),
            rep(TYPICAL_SIGMA_MS),
            rep(TYPICAL_HEIGHT_MV),
            torch.full((batch,), float(rr_s), dtype=dtype),
        )
