"""McSharry et al. (2003) ECGSYN, batched in torch.

The model (McSharry, Clifford, Tarassenko & Smith, IEEE TBME 50(3):289-294, 2003, eqs. 3-4) moves a
point around the unit circle with angular velocity ω = 2π/RR and lets the ECG z follow

    dz/dt = −Σ_i a_i Δθ_i exp(−Δθ_i² / 2 b_i²) − (z − z0(t)),   Δθ_i = (θ − θ_i) wrapped to [−π, π],

with one Gaussian per wave i ∈ (P, Q, R, S, T). ``ecgsyn_rhs`` is that right-hand side as a pure
function and ``ecgsyn_strip`` integrates it with fixed-step RK4 (used to check agreement with
neurokit2, which integrates the same equations).

For the representative beat (constant RR, no baseline wander) the periodic steady state has a
closed form. On the limit cycle θ = ωt, and the forcing is the time derivative of

    G(t) = Σ_i (a_i b_i² / ω) exp(−Δθ_i² / 2 b_i²),

so z' = G' − z, whose periodic solution is z = G − L[G], L the first-order low-pass with a 1-s time
constant, ``L[G](t) = ∫_0^∞ e^{−u} G(t − u) du``. G's Fourier series is known in closed form (each wave is
a wrapped Gaussian), so ``ecgsyn_beat`` builds z's series directly (G's times the high-pass response
iω_k/(1 + iω_k)), inverts it with one FFT per beat and interpolates the window's samples; batched over
thousands of beats.

Units: phases θ_i and widths b_i in radians, RR in seconds, time in seconds relative to cardiac
phase 0 (the nominal R-wave phase), output in mV (z times ``MV_PER_Z``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vtrial.physiology.checks import check_finite, check_positive

WAVES = ("P", "Q", "R", "S", "T")

# McSharry 2003, Table 1 (also neurokit2's defaults): angles in degrees, a_i, b_i in radians.
DEFAULT_THETA_DEG = (-70.0, -15.0, 0.0, 15.0, 100.0)
DEFAULT_A = (1.2, -5.0, 30.0, -7.5, 0.75)
DEFAULT_B_RAD = (0.25, 0.1, 0.1, 0.1, 0.4)

# Gain from ECGSYN's dimensionless z to millivolts. McSharry scales z linearly onto [-0.4, 1.2] mV;
# we fix one gain instead (computed for the default parameters at 60 bpm, see tests) so that a
# flatter T wave stays flatter rather than being rescaled away beat by beat.
MV_PER_Z = 27.4463

# ECGSYN's baseline relaxation time constant (the "−(z − z0)" term), seconds.
RELAXATION_TIME_S = 1.0


@dataclass(frozen=True)
class EcgsynParams:
    """A batch of ECGSYN parameter vectors ψ = (θ_i, a_i, b_i; RR).

    Attributes
    ----------
    theta_rad : (B, 5) wave phases, radians, order P Q R S T.
    a : (B, 5) wave amplitudes (ECGSYN's a_i, dimensionless).
    b_rad : (B, 5) wave widths, radians, > 0.
    rr_s : (B,) RR interval, seconds, > 0.
    """

    theta_rad: torch.Tensor
    a: torch.Tensor
    b_rad: torch.Tensor
    rr_s: torch.Tensor

    def validate(self) -> EcgsynParams:
        """Raise ValueError naming the first non-physical parameter; return self."""
        check_finite("theta_rad", self.theta_rad)
        check_finite("a", self.a)
        check_positive("b_rad", self.b_rad)
        check_positive("rr_s", self.rr_s)
        batch = self.rr_s.shape[0]
        for name in ("theta_rad", "a", "b_rad"):
            shape = tuple(getattr(self, name).shape)
            if shape != (batch, len(WAVES)):
                raise ValueError(f"{name} has shape {shape}, expected ({batch}, {len(WAVES)})")
        return self

    @property
    def batch_size(self) -> int:
        return int(self.rr_s.shape[0])

    @staticmethod
    def default(batch: int = 1, rr_s: float = 1.0, dtype=torch.float64) -> EcgsynParams:
        """McSharry's default parameters (no rate adjustment) for ``batch`` identical beats."""

        def rep(values):
            return torch.tensor(values, dtype=dtype).expand(batch, -1).clone()

        return EcgsynParams(
            theta_rad=rep(DEFAULT_THETA_DEG) * (math.pi / 180.0),
            a=rep(DEFAULT_A),
            b_rad=rep(DEFAULT_B_RAD),
            rr_s=torch.full((batch,), float(rr_s), dtype=dtype),
        )


def mcsharry_rate_adjust(theta_deg, b_rad, hr_bpm: float):
    """ECGSYN's heart-rate adaptation of wave positions and widths (as in McSharry's and neurokit2's code).

    θ_i is scaled by (√f_hr^{1/2}, √f_hr, 1, √f_hr, √f_hr^{1/2}) and b_i by √f_hr, f_hr = HR/60.
    Returns (theta_rad, b_rad) as tensors.
    """
    f = math.sqrt(hr_bpm / 60.0)
    f2 = math.sqrt(f)
    theta = torch.as_tensor(theta_deg, dtype=torch.float64) * (math.pi / 180.0)
    theta = theta * torch.tensor([f2, f, 1.0, f, f2], dtype=torch.float64)
    return theta, torch.as_tensor(b_rad, dtype=torch.float64) * f


def wrap_phase(delta_rad: torch.Tensor) -> torch.Tensor:
    """Wrap phase differences to [−π, π] as ECGSYN does (x − 2π·round(x / 2π))."""
    return delta_rad - torch.round(delta_rad / (2 * math.pi)) * (2 * math.pi)


def ecgsyn_rhs(
    t_s: torch.Tensor,
    state: torch.Tensor,
    theta_rad: torch.Tensor,
    a: torch.Tensor,
    b_rad: torch.Tensor,
    omega_rad_s: torch.Tensor,
    resp_amp: float = 0.0,
    resp_hz: float = 0.25,
) -> torch.Tensor:
    """Right-hand side of the ECGSYN ODE (McSharry 2003, eq. 3), batched.

    Parameters
    ----------
    t_s : scalar tensor, time in seconds (only the baseline wander z0(t) depends on it).
    state : (B, 3) the state (x, y, z).
    theta_rad, a, b_rad : (B, 5) wave parameters.
    omega_rad_s : (B,) angular velocity 2π/RR.
    resp_amp, resp_hz : baseline wander z0(t) = resp_amp·sin(2π·resp_hz·t) (McSharry: 0.005, 0.25 Hz).

    Returns
    -------
    (B, 3) time derivative of the state.
    """
    x, y, z = state[:, 0], state[:, 1], state[:, 2]
    alpha = 1.0 - torch.sqrt(x * x + y * y)
    dx = alpha * x - omega_rad_s * y
    dy = alpha * y + omega_rad_s * x
    theta = torch.atan2(y, x)
    dtheta = wrap_phase(theta[:, None] - theta_rad)  # (B, 5)
    z0 = resp_amp * torch.sin(2 * math.pi * resp_hz * t_s)
    dz = -(a * dtheta * torch.exp(-0.5 * (dtheta / b_rad) ** 2)).sum(dim=1) - (z - z0) / RELAXATION_TIME_S
    return torch.stack([dx, dy, dz], dim=1)


def ecgsyn_strip(
    params: EcgsynParams,
    duration_s: float,
    fs_hz: float,
    z_init: float = 0.04,
    resp_amp: float = 0.0,
    substeps: int = 4,
) -> torch.Tensor:
    """Integrate the ECGSYN ODE from (1, 0, z_init) with fixed-step RK4; constant RR per beat.

    Returns (B, n) raw z sampled at ``fs_hz`` from t = 0 (n = round(duration_s·fs_hz)). This is the
    slow, general path (a strip with transients and baseline wander); ``ecgsyn_beat`` is the fast one.
    """
    params.validate()
    check_positive("fs_hz", fs_hz)
    check_positive("duration_s", duration_s)
    dtype = params.a.dtype
    omega = 2 * math.pi / params.rr_s
    batch = params.batch_size
    state = torch.zeros(batch, 3, dtype=dtype)
    state[:, 0] = 1.0
    state[:, 2] = z_init
    n = int(round(duration_s * fs_hz))
    dt = 1.0 / (fs_hz * substeps)
    out = torch.empty(batch, n, dtype=dtype)

    def f(t, s):
        return ecgsyn_rhs(t, s, params.theta_rad, params.a, params.b_rad, omega, resp_amp)

    t = torch.zeros((), dtype=dtype)
    for i in range(n):
        out[:, i] = state[:, 2]
        for _ in range(substeps):
            k1 = f(t, state)
            k2 = f(t + dt / 2, state + dt / 2 * k1)
            k3 = f(t + dt / 2, state + dt / 2 * k2)
            k4 = f(t + dt, state + dt * k3)
            state = state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            t = t + dt
    return out


def beat_times_s(fs_hz: float, window_s: tuple[float, float] = (-0.4, 0.8), dtype=torch.float32) -> torch.Tensor:
    """Sample times of a beat window, seconds relative to cardiac phase 0: [start, stop) at fs_hz."""
    start, stop = window_s
    if not stop > start:
        raise ValueError(f"window_s = {window_s!r} must have stop > start")
    n = int(round((stop - start) * fs_hz))
    return start + torch.arange(n, dtype=dtype) / fs_hz


def _fourier_coefficients(params: EcgsynParams, omega: torch.Tensor, n_coef: int) -> torch.Tensor:
    """Fourier coefficients c_k, k = 0..n_coef−1, of G over one cycle (period 2π in θ), (B, K) complex.

    Each wave is a wrapped Gaussian, so c_k = Σ_i h_i b_i/√(2π) · exp(−k² b_i²/2) · e^{−ikθ_i} with
    h_i = a_i b_i²/ω its height (exact up to the wrap's e^{−π²/2b²} tail, < 1e-10 for b < 0.5 rad).
    """
    k = torch.arange(n_coef, dtype=params.a.dtype)
    weight = params.a * params.b_rad**3 / (omega[:, None] * math.sqrt(2 * math.pi))  # (B, 5)
    mag = torch.exp((params.b_rad[:, :, None] * k).square_().mul_(-0.5)).mul_(weight[:, :, None])  # (B, 5, K)
    return torch.polar(mag, params.theta_rad[:, :, None] * (-k)).sum(dim=1)  # (B, K)


def _grid_points(b_rad: torch.Tensor) -> torch.Tensor:
    """Grid points per beat, (B,): the power of two ≥ 64 per radian of the beat's narrowest width, so
    linear interpolation errs by < (2π/64)²/8 ≈ 1.2e-3 of that wave's height. A beat's grid depends on
    that beat alone, never on the rest of its batch, so results do not depend on how beats are batched."""
    b_min = b_rad.min(dim=1).values.clamp(min=1e-6).double()
    return torch.pow(2.0, torch.ceil(torch.log2(64.0 / b_min)).clamp(min=9)).long()


def _n_coefficients(m: int) -> int:
    """Coefficients kept for grid size m: up to exp(−k²b²/2) < 1e-8 for the narrowest b it admits (64/m)."""
    return min(int(math.ceil(6.1 * m / 64.0)) + 1, m // 2 + 1)


def _interp_periodic(grid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of periodic rows ``grid`` (B, M) at fractional indices ``pos`` ∈ [0, M), (B, T).

    ``grid_sample`` does the gather and the blend in one fused kernel; the first column is appended
    so that positions in the last interval wrap to the start.
    """
    b, m = grid.shape
    padded = torch.cat([grid, grid[:, :1]], dim=1)[:, None, None, :]  # (B, 1, 1, M+1)
    x = pos * (2.0 / m) - 1.0
    coords = torch.stack([x, torch.zeros_like(x)], dim=-1)[:, None]  # (B, 1, T, 2)
    out = torch.nn.functional.grid_sample(padded, coords, mode="bilinear", align_corners=True)
    return out[:, 0, 0, :]


def ecgsyn_beat(
    params: EcgsynParams,
    fs_hz: float = 500.0,
    window_s: tuple[float, float] = (-0.4, 0.8),
    validate: bool = True,
) -> torch.Tensor:
    """Steady-state ECGSYN beats for a batch of patients, in mV.

    z = G − L[G] has the Fourier coefficients c_k · iω_kτ / (1 + iω_kτ) (ω_k = 2πk/RR, τ = 1 s); one
    inverse FFT gives z on a fine grid over the cycle, from which the window's samples are interpolated.

    Parameters
    ----------
    params : ψ for B beats.
    fs_hz : sampling rate of the output, Hz.
    window_s : (start, stop) of the window around cardiac phase 0 (the R wave), seconds. A window longer
        than RR shows the neighbouring beats, as a real median-beat window does.
    validate : check parameters first (skip only for inputs already checked).

    Returns
    -------
    (B, T) tensor in mV, T = round((stop − start)·fs_hz), dtype of ``params``.
    """
    if validate:
        params.validate()
        check_positive("fs_hz", fs_hz)
    dtype = params.a.dtype
    omega = 2 * math.pi / params.rr_s  # (B,)
    t = beat_times_s(fs_hz, window_s, dtype=dtype)
    out = torch.empty(params.batch_size, t.shape[0], dtype=dtype)
    grid_points = _grid_points(params.b_rad)
    for m in torch.unique(grid_points).tolist():  # usually one or two groups
        rows = (grid_points == m).nonzero()[:, 0]
        sub = EcgsynParams(params.theta_rad[rows], params.a[rows], params.b_rad[rows], params.rr_s[rows])
        n_coef = _n_coefficients(m)
        coef = _fourier_coefficients(sub, omega[rows], n_coef)  # (b, K)
        iwt = 1j * torch.arange(n_coef, dtype=dtype)[None, :] * omega[rows, None] * RELAXATION_TIME_S
        z_grid = torch.fft.irfft(coef * (iwt / (1 + iwt)) * m, n=m, dim=1)  # (b, M): z at θ = 2πj/M
        pos = torch.remainder(omega[rows, None] * t[None, :], 2 * math.pi) * (m / (2 * math.pi))
        out[rows] = _interp_periodic(z_grid, pos)
    return out.mul_(MV_PER_Z)
