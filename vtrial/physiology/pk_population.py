"""Typical oral PK parameters and their inter-individual variability from a study's concentration moments.

Given the mean and SD of plasma concentration at each sampling time after one oral dose, find the typical
ka, CL/F, V1/F, lag (and Q, V2 for two compartments) and the log-normal ω of ka, CL and V1 such that a
simulated population — ``draws`` subjects from fixed standard-normal draws, through the same simulator
vtrial runs (``pk.concentrations``) — has that mean and SD at every time (the method of simulated moments;
least squares on both moments, scaled by the mean concentration). What a simulated trial needs is exactly
this: its population, not only its typical subject, should match the study. Per-subject fits of sparse
single-dose profiles carry their estimation noise into ω instead. Pure computation (scipy).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from vtrial.physiology.pk import DoseEvent, PKParams, concentrations

# θ: log ka, log CL, log V1, lag (h), then log Q, log V2 for two compartments
THETA_LOWER = np.array([-5.0, -5.0, -3.0, 0.0, -5.0, -3.0])
THETA_UPPER = np.array([4.0, 10.0, 12.0, 2.0, 10.0, 12.0])
OMEGA_BOUNDS = (0.01, 1.5)


def simulate_mg_l(theta, omega, z: np.ndarray, dose_mg: float, times_h) -> np.ndarray:
    """Concentrations (mg/L, (N, T)) of N subjects: P_i = P_typical · exp(ω · z_i) for ka, CL, V1;
    ``theta`` of length 4 (one compartment) or 6 (two); ``z`` (3, N) standard normal (ka, CL, V1)."""
    th = np.asarray(theta, float)
    w = np.asarray(omega, float)
    two = len(th) == 6
    p = PKParams(
        ka_per_h=np.exp(th[0] + w[0] * z[0]),
        cl_l_h=np.exp(th[1] + w[1] * z[1]),
        v1_l=np.exp(th[2] + w[2] * z[2]),
        tlag_h=th[3],
        q_l_h=np.exp(th[4]) if two else 0.0,
        v2_l=np.exp(th[5]) if two else 1.0,
        fu=1.0,
        mw_g_mol=1e6,
    )  # with MW 1e6 g/mol, nM = mg/L
    return concentrations(p, [DoseEvent(0.0, dose_mg, "oral")], times_h, validate=False).conc_total_nM


def fit_population_moments(
    times_h, mean_mg_l, sd_mg_l, dose_mg: float, theta0, draws: int = 500, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """(θ, ω): typical parameters (as ``theta0``: length 4 or 6) and ω of (ka, CL, V1) whose simulated
    population reproduces the observed ``mean_mg_l`` and ``sd_mg_l`` at ``times_h``."""
    times = np.asarray(times_h, float)
    mean, sd = np.asarray(mean_mg_l, float), np.asarray(sd_mg_l, float)
    if not (times.shape == mean.shape == sd.shape) or times.ndim != 1:
        raise ValueError(
            f"times_h, mean_mg_l and sd_mg_l must be 1-D of one length; got {times.shape}, {mean.shape}, {sd.shape}"
        )
    n_theta = len(theta0)
    if n_theta not in (4, 6):
        raise ValueError(f"theta0 has {n_theta} entries; expected 4 (one compartment) or 6 (two)")
    scale = float(np.mean(mean))
    z = np.random.default_rng(seed).standard_normal((3, draws))

    def residuals(x):
        sim = simulate_mg_l(x[:n_theta], np.exp(x[n_theta:]), z, dose_mg, times)
        return np.r_[(sim.mean(axis=0) - mean) / scale, (sim.std(axis=0) - sd) / scale]

    lo = np.r_[THETA_LOWER[:n_theta], np.full(3, np.log(OMEGA_BOUNDS[0]))]
    hi = np.r_[THETA_UPPER[:n_theta], np.full(3, np.log(OMEGA_BOUNDS[1]))]
    x0 = np.clip(np.r_[theta0, np.full(3, np.log(0.3))], lo, hi)
    sol = least_squares(residuals, x0, bounds=(lo, hi), diff_step=1e-3)
    return sol.x[:n_theta], np.exp(sol.x[n_theta:])
