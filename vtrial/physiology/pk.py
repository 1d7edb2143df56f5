"""Linear pharmacokinetics: one- and two-compartment models, oral and IV dosing, an effect compartment.

Every linear model here is one state-space system x' = K x + input with amounts in mg,

    depot  A_d' = −ka·A_d
    central A_c' = ka·A_d − (CL + Q)/V1·A_c + Q/V2·A_p
    periph  A_p' = Q/V1·A_c − Q/V2·A_p
    effect  C_e' = ke0·(A_c/V1 − C_e)            (concentration, mg/L; hysteresis of the ECG effect)

(one-compartment: Q = 0). A dose's response is exact through the matrix exponential: a bolus or an
oral dose adds to a state, and an infusion of rate R over T_inf is a step R·Φ(τ) minus a step
R·Φ(τ − T_inf), with Φ(τ) = ∫_0^τ e^{Ku} e_c du read off the exponential of the augmented matrix
[[K, e_c], [0, 0]]. Repeated doses superpose (the system is linear). The textbook closed forms
(Gibaldi & Perrier, Pharmacokinetics, 2nd ed., ch. 1-3) are kept below as references for the tests.

Units: time h, dose mg, CL and Q L/h, V L, ka and ke0 1/h; concentrations leave as nM through the
molar mass (1 mg/L = 1e6 / MW nM) and the free fraction f_u.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from vtrial.physiology.checks import check_finite, check_fraction, check_nonnegative, check_positive

Route = Literal["oral", "iv_bolus", "iv_infusion"]
ROUTES = ("oral", "iv_bolus", "iv_infusion")


@dataclass(frozen=True)
class DoseEvent:
    """One administration: ``amount_mg`` at ``time_h``; an infusion lasts ``duration_h``."""

    time_h: float
    amount_mg: float
    route: Route = "oral"
    duration_h: float = 0.0

    def __post_init__(self):
        if self.route not in ROUTES:
            raise ValueError(f"route = {self.route!r} is not one of {', '.join(ROUTES)}")
        check_finite("time_h", self.time_h)
        check_positive("amount_mg", self.amount_mg)
        check_nonnegative("duration_h", self.duration_h)
        if self.route == "iv_infusion" and not self.duration_h > 0:
            raise ValueError(f"duration_h = {self.duration_h!r} must be > 0 for an iv_infusion")


def regimen(
    amount_mg: float,
    route: Route = "oral",
    start_h: float = 0.0,
    interval_h: float | None = None,
    count: int = 1,
    duration_h: float = 0.0,
) -> list[DoseEvent]:
    """``count`` doses of ``amount_mg`` every ``interval_h`` hours from ``start_h``."""
    if count < 1:
        raise ValueError(f"count = {count!r} must be >= 1")
    if count > 1:
        if interval_h is None:
            raise ValueError("interval_h is required when count > 1")
        check_positive("interval_h", interval_h)
    return [DoseEvent(start_h + i * (interval_h or 0.0), amount_mg, route, duration_h) for i in range(count)]


@dataclass(frozen=True)
class PKParams:
    """Per-patient PK parameters, each an array of shape (B,) (or a scalar, broadcast).

    ``cl_l_h`` and ``v1_l`` are apparent (CL/F, V/F) for oral drugs unless ``f_bio`` is given;
    ``q_l_h = 0`` makes a one-compartment model; ``ke0_per_h = inf`` puts no delay between plasma
    and effect site; ``tlag_h`` delays oral absorption.
    """

    cl_l_h: np.ndarray
    v1_l: np.ndarray
    ka_per_h: np.ndarray
    q_l_h: np.ndarray | float = 0.0
    v2_l: np.ndarray | float = 1.0
    ke0_per_h: np.ndarray | float = math.inf
    tlag_h: np.ndarray | float = 0.0
    f_bio: np.ndarray | float = 1.0
    fu: float = 1.0
    mw_g_mol: float = 1000.0

    def validate(self) -> PKParams:
        for name in ("cl_l_h", "v1_l", "ka_per_h", "v2_l", "mw_g_mol"):
            check_positive(name, getattr(self, name))
        check_nonnegative("q_l_h", self.q_l_h)
        check_nonnegative("tlag_h", self.tlag_h)
        check_fraction("f_bio", self.f_bio)
        check_fraction("fu", self.fu)
        ke0 = np.asarray(self.ke0_per_h, dtype=float)
        if np.isnan(ke0).any() or (ke0 <= 0).any():
            raise ValueError(f"ke0_per_h = {self.ke0_per_h!r} must be > 0 (inf: no effect delay)")
        return self

    @property
    def batch_size(self) -> int:
        return int(
            np.broadcast(
                *(
                    np.asarray(getattr(self, n))
                    for n in ("cl_l_h", "v1_l", "ka_per_h", "q_l_h", "v2_l", "ke0_per_h", "tlag_h", "f_bio")
                )
            ).size
        )


@dataclass(frozen=True)
class Variability:
    """Log-normal inter-individual variability: SDs of log CL, log V1, log ka (ω, ≈ CV for small ω)."""

    omega_cl: float = 0.0
    omega_v: float = 0.0
    omega_ka: float = 0.0

    def __post_init__(self):
        for name in ("omega_cl", "omega_v", "omega_ka"):
            check_nonnegative(name, getattr(self, name))


def sample_individuals(typical: PKParams, variability: Variability, n: int, rng: np.random.Generator) -> PKParams:
    """Draw ``n`` patients: P_i = P_typical · exp(η_i), η_i ~ N(0, ω²), from the passed-in generator."""
    if n < 1:
        raise ValueError(f"n = {n!r} must be >= 1")
    eta = (
        rng.standard_normal((3, n))
        * np.array([variability.omega_cl, variability.omega_v, variability.omega_ka])[:, None]
    )
    return replace(
        typical,
        cl_l_h=np.asarray(typical.cl_l_h, float) * np.exp(eta[0]),
        v1_l=np.asarray(typical.v1_l, float) * np.exp(eta[1]),
        ka_per_h=np.asarray(typical.ka_per_h, float) * np.exp(eta[2]),
    )


def _system_matrix(p: PKParams, batch: int) -> torch.Tensor:
    """Augmented (B, 5, 5) matrix [[K, e_central], [0, 0]] in float64."""

    def col(x):
        return torch.as_tensor(np.broadcast_to(np.asarray(x, float), (batch,)).copy(), dtype=torch.float64)

    cl, v1, ka, q, v2 = col(p.cl_l_h), col(p.v1_l), col(p.ka_per_h), col(p.q_l_h), col(p.v2_l)
    ke0 = col(p.ke0_per_h)
    ke0 = torch.where(torch.isinf(ke0), torch.zeros_like(ke0), ke0)  # no effect compartment: unused
    m = torch.zeros(batch, 5, 5, dtype=torch.float64)
    m[:, 0, 0] = -ka
    m[:, 1, 0] = ka
    m[:, 1, 1] = -(cl + q) / v1
    m[:, 1, 2] = q / v2
    m[:, 2, 1] = q / v1
    m[:, 2, 2] = -q / v2
    m[:, 3, 1] = ke0 / v1
    m[:, 3, 3] = -ke0
    m[:, 1, 4] = 1.0  # infusion input into the central compartment
    return m


def _propagator(m: torch.Tensor, tau_h: torch.Tensor) -> torch.Tensor:
    """exp(M τ) for M (B, 5, 5) and τ (B, N) ≥ 0 → (B, N, 5, 5); zero where τ < 0."""
    e = torch.linalg.matrix_exp(m[:, None] * tau_h.clamp(min=0)[..., None, None])
    return e * (tau_h >= 0)[..., None, None]


@dataclass(frozen=True)
class Exposure:
    """Concentrations, each (B, T): plasma total and free, and free at the effect site, all nM."""

    conc_total_nM: np.ndarray
    conc_free_nM: np.ndarray
    conc_effect_free_nM: np.ndarray


def concentrations(params: PKParams, doses: Iterable[DoseEvent], times_h, validate: bool = True) -> Exposure:
    """Exact concentration–time profiles of B patients under a dosing regimen.

    Parameters
    ----------
    params : PK parameters, (B,) arrays.
    doses : the regimen (see ``regimen``); all patients get the same doses.
    times_h : (T,) times in hours on the dose clock.

    Returns
    -------
    Exposure with (B, T) arrays in nM.
    """
    if validate:
        params.validate()
    doses = list(doses)
    times = torch.tensor(np.array(times_h, dtype=float), dtype=torch.float64)
    check_finite("times_h", times)
    batch = params.batch_size
    m = _system_matrix(params, batch)
    tlag = torch.as_tensor(np.broadcast_to(np.asarray(params.tlag_h, float), (batch,)).copy(), dtype=torch.float64)
    f_bio = torch.as_tensor(np.broadcast_to(np.asarray(params.f_bio, float), (batch,)).copy(), dtype=torch.float64)
    amounts = torch.zeros(batch, times.shape[0], 5, dtype=torch.float64)  # states (+1 unused input slot)
    for dose in doses:
        tau = times[None, :] - dose.time_h  # (B, T)
        if dose.route == "oral":
            prop = _propagator(m, tau - tlag[:, None])
            amounts += prop[..., :, 0] * (dose.amount_mg * f_bio)[:, None, None]
        elif dose.route == "iv_bolus":
            amounts += _propagator(m, tau)[..., :, 1] * dose.amount_mg
        else:  # infusion: step minus delayed step, Φ in the augmented column
            rate = dose.amount_mg / dose.duration_h
            on = _propagator(m, tau)[..., :, 4]
            off = _propagator(m, tau - dose.duration_h)[..., :, 4]
            amounts += rate * (on - off)
    v1 = torch.as_tensor(np.broadcast_to(np.asarray(params.v1_l, float), (batch,)).copy(), dtype=torch.float64)
    plasma_mg_l = amounts[..., 1] / v1[:, None]
    ke0 = np.broadcast_to(np.asarray(params.ke0_per_h, float), (batch,))
    effect_mg_l = torch.where(torch.as_tensor(np.isinf(ke0))[:, None], plasma_mg_l, amounts[..., 3])
    to_nm = 1e6 / params.mw_g_mol
    total = (plasma_mg_l * to_nm).clamp(min=0).numpy()
    effect = (effect_mg_l * to_nm * params.fu).clamp(min=0).numpy()
    return Exposure(conc_total_nM=total, conc_free_nM=total * params.fu, conc_effect_free_nM=effect)


# --- closed forms (references for tests; mg/L) -------------------------------------------------------


def one_compartment_oral_mg_l(t_h, dose_mg, ka, cl, v, f_bio=1.0):
    """C(t) = F·D·ka / (V (ka − k)) · (e^{−kt} − e^{−ka t}), k = CL/V (Gibaldi & Perrier eq. 1.x)."""
    t = np.asarray(t_h, float)
    k = cl / v
    c = f_bio * dose_mg * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    return np.where(t >= 0, c, 0.0)


def one_compartment_bolus_mg_l(t_h, dose_mg, cl, v):
    """C(t) = D/V · e^{−kt}."""
    t = np.asarray(t_h, float)
    return np.where(t >= 0, dose_mg / v * np.exp(-cl / v * t), 0.0)


def one_compartment_infusion_mg_l(t_h, dose_mg, duration_h, cl, v):
    """C(t) = R/CL (1 − e^{−k min(t, T)}) e^{−k max(t − T, 0)}, R = D/T."""
    t = np.asarray(t_h, float)
    k = cl / v
    rate = dose_mg / duration_h
    c = rate / cl * (1 - np.exp(-k * np.clip(t, 0, duration_h))) * np.exp(-k * np.clip(t - duration_h, 0, None))
    return np.where(t >= 0, c, 0.0)


def _alpha_beta(cl, v1, q, v2):
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    d = math.sqrt(s * s - 4 * k10 * k21)
    return (s + d) / 2, (s - d) / 2, k21


def two_compartment_bolus_mg_l(t_h, dose_mg, cl, v1, q, v2):
    """C(t) = D/V1 [(α − k21)/(α − β) e^{−αt} + (k21 − β)/(α − β) e^{−βt}]."""
    t = np.asarray(t_h, float)
    a, b, k21 = _alpha_beta(cl, v1, q, v2)
    c = dose_mg / v1 * ((a - k21) / (a - b) * np.exp(-a * t) + (k21 - b) / (a - b) * np.exp(-b * t))
    return np.where(t >= 0, c, 0.0)


def two_compartment_oral_mg_l(t_h, dose_mg, ka, cl, v1, q, v2, f_bio=1.0):
    """C(t) = F·D·ka/V1 Σ_j (k21 − λ_j) / Π_{l≠j}(λ_l − λ_j) · e^{−λ_j t}, λ ∈ {α, β, ka}."""
    t = np.asarray(t_h, float)
    a, b, k21 = _alpha_beta(cl, v1, q, v2)
    lam = (a, b, ka)
    total = 0.0
    for j, lj in enumerate(lam):
        denom = np.prod([lam[l] - lj for l in range(3) if l != j])
        total = total + (k21 - lj) / denom * np.exp(-lj * t)
    return np.where(t >= 0, f_bio * dose_mg * ka / v1 * total, 0.0)


def one_compartment_oral_effect_mg_l(t_h, dose_mg, ka, cl, v, ke0, f_bio=1.0):
    """Effect-site concentration of a one-compartment oral model (three-exponential closed form)."""
    t = np.asarray(t_h, float)
    k = cl / v
    lam = (k, ka, ke0)
    total = 0.0
    for j, lj in enumerate(lam):
        denom = np.prod([lam[l] - lj for l in range(3) if l != j])
        total = total + np.exp(-lj * t) / denom
    return np.where(t >= 0, f_bio * dose_mg * ka * ke0 / v * total, 0.0)
