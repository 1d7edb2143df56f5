"""hERG block with binding kinetics and trapping: the CiPA dynamic hERG model under a paced action potential.

A static IC50 says how much of the channel a drug blocks at equilibrium in a fixed voltage protocol; in a
beating heart the block depends on how fast the drug binds and leaves, and on whether the channel can close
with the drug inside (trapping). CiPA's answer (Li et al., Circ Arrhythm Electrophysiol 2017,
doi:10.1161/CIRCEP.116.004628) is a temperature-dependent Markov model of hERG gating (Li et al. 2016) with
drug-bound states: the drug binds the open (O) and inactivated (IO) channel at rate
k_on = Kmax·Ku·Dⁿ/(Dⁿ + halfmax) (D in nM), leaves at Ku (from IO at Ku·k53/k63, so that binding does not
change inactivation), and a bound channel closes (trapping the drug, state Cb) at rate Kt and reopens at
Kt/(1 + exp(−(V − Vhalf)/6.789)). A drug with a high Vhalf stays trapped through diastole.

Here the channel is clamped to a fixed ventricular action potential paced at ``cycle_ms``: the chain is linear
for a given voltage, so one beat's propagator is a product of matrix exponentials, the periodic steady state
is its eigenvector at 1, and the effective block is 1 − (IKr charge with drug)/(IKr charge without), over that
beat. The action potential is a template (no feedback of the prolonged repolarization on the block): enough
to rank drugs by how much IKr they remove per beat, which is what the map Δ(block) reads. Gating and binding
parameters: ``vtrial/data/herg_kinetics.json`` (the FDA CiPA repository's fitted values). Pure computation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.linalg import expm

from vtrial.physiology.checks import check_nonnegative, check_positive

STATES = ("IC1", "IC2", "C1", "C2", "O", "IO", "IOb", "Ob", "Cb")
_IX = {s: i for i, s in enumerate(STATES)}
FREE = 6  # the first six states are drug-free
# (rate name, from, to) of the drug-free gating transitions
_GATING = (
    ("1", "C1", "C2"),
    ("2", "C2", "C1"),
    ("3", "IC2", "IO"),
    ("4", "IO", "IC2"),
    ("11", "IC1", "IC2"),
    ("21", "IC2", "IC1"),
    ("31", "C2", "O"),
    ("41", "O", "C2"),
    ("51", "C1", "IC1"),
    ("61", "IC1", "C1"),
    ("52", "C2", "IC2"),
    ("62", "IC2", "C2"),
    ("53", "O", "IO"),
    ("63", "IO", "O"),
)
REST_MV = -88.0
EK_MV = -87.0
TRAP_SLOPE_MV = 6.789


@dataclass(frozen=True)
class HergBinding:
    """A drug's hERG binding kinetics (Li et al. 2017): Kmax, Ku (1/ms), n, halfmax (nMⁿ), Vhalf (mV)."""

    kmax: float
    ku_per_ms: float
    n: float
    halfmax: float
    vhalf_mv: float

    def __post_init__(self):
        for name in ("kmax", "ku_per_ms", "n", "halfmax"):
            check_positive(f"herg_binding.{name}", getattr(self, name))
        if not math.isfinite(self.vhalf_mv):
            raise ValueError(f"herg_binding.vhalf_mv = {self.vhalf_mv!r} must be finite")

    @staticmethod
    def from_dict(d: dict) -> HergBinding:
        return d if isinstance(d, HergBinding) else HergBinding(**d)


@lru_cache(maxsize=1)
def gating() -> dict:
    """The drug-free gating parameters (A, B, q per rate), Kt (1/ms) and the temperature (°C)."""
    text = resources.files("vtrial.data").joinpath("herg_kinetics.json").read_text()
    return json.loads(text)["gating"]


def action_potential_mv(t_ms, cycle_ms: float = 1000.0) -> np.ndarray:
    """A ventricular action potential template (mV) at times ``t_ms`` within a beat: upstroke at 0 to a
    plateau falling from +30 mV, repolarization around 240 ms (APD90 ≈ 270 ms), rest at −88 mV."""
    t = np.mod(np.asarray(t_ms, float), cycle_ms)
    plateau = 30.0 - 0.12 * t
    return REST_MV + (plateau - REST_MV) / (1.0 + np.exp((t - 240.0) / 15.0))


def rate_matrices(v_mv, conc_nM: float, binding: HergBinding | None) -> np.ndarray:
    """Generators Q (..., 9, 9) with dx/dt = Q x at voltages ``v_mv`` (...,), drug at ``conc_nM``."""
    g = gating()
    v = np.asarray(v_mv, float)
    q = np.zeros(v.shape + (len(STATES), len(STATES)))
    tf = (g["temperature_c"] - 20.0) / 10.0

    def rate(name):
        return g["A" + name] * np.exp(g["B" + name] * v) * g["q" + name] ** tf

    def add(a, b, r):
        q[..., _IX[b], _IX[a]] += r
        q[..., _IX[a], _IX[a]] -= r

    for name, a, b in _GATING:
        add(a, b, rate(name))
    if binding is not None and conc_nM > 0:
        dn = conc_nM**binding.n
        kon = binding.kmax * binding.ku_per_ms * dn / (dn + binding.halfmax)
        kt = g["Kt"]
        reopen = kt / (1.0 + np.exp(-(v - binding.vhalf_mv) / TRAP_SLOPE_MV))
        add("O", "Ob", kon)
        add("Ob", "O", binding.ku_per_ms)
        add("IO", "IOb", kon)
        add("IOb", "IO", binding.ku_per_ms * rate("53") / rate("63"))
        add("Cb", "Ob", reopen)
        add("Cb", "IOb", reopen)
        add("Ob", "Cb", kt)
        add("IOb", "Cb", kt)
    return q


# step lengths (ms) through the beat: short where the template's voltage moves fast (upstroke, repolarization),
# long on the plateau (−0.12 mV/ms) and in diastole
_STEPS_MS = ((0.0, 200.0, 5.0), (200.0, 320.0, 1.0), (320.0, 420.0, 5.0))


def _beat(cycle_ms: float, dt_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Step midpoints' voltages and step lengths over one beat (``dt_scale`` multiplies every step); one step
    for the rest of diastole (the template is at rest within 0.01 mV by then)."""
    edges = np.unique(
        np.concatenate(
            [np.arange(a, min(b, cycle_ms), h * dt_scale) for a, b, h in _STEPS_MS] + [[min(420.0, cycle_ms)]]
        )
    )
    mids = (edges[1:] + edges[:-1]) / 2
    v, dt = action_potential_mv(mids, cycle_ms), np.diff(edges)
    if cycle_ms > edges[-1]:
        v, dt = np.append(v, REST_MV), np.append(dt, cycle_ms - edges[-1])
    return v, dt


def ikr_charge(conc_nM: float, binding: HergBinding | None, cycle_ms: float = 1000.0, dt_scale: float = 1.0) -> float:
    """∫ O·(V − EK) dt over one beat at the periodic steady state (conductance 1: relative units);
    ``dt_scale`` < 1 refines the time steps (a convergence check)."""
    check_nonnegative("conc_nM", conc_nM)
    check_positive("cycle_ms", cycle_ms)
    v, dt = _beat(cycle_ms, dt_scale)
    props = expm(rate_matrices(v, conc_nM, binding) * dt[:, None, None])
    m = np.eye(len(STATES))
    for p in props:
        m = p @ m
    n = len(STATES) if binding is not None and conc_nM > 0 else FREE  # drug-free: bound states unreachable
    w, vecs = np.linalg.eig(m[:n, :n])
    x = np.zeros(len(STATES))
    x[:n] = np.real(vecs[:, np.argmin(np.abs(w - 1.0))])
    x /= x.sum()
    charge = 0.0
    o = _IX["O"]
    for p, vk, dk in zip(props, v, dt):
        x1 = p @ x
        charge += 0.5 * (x[o] + x1[o]) * (vk - EK_MV) * dk
        x = x1
    return float(charge)


@lru_cache(maxsize=8)
def _control_charge(cycle_ms: float) -> float:
    return ikr_charge(0.0, None, cycle_ms)


def steady_state_block(conc_nM: float, binding: HergBinding, cycle_ms: float = 1000.0) -> float:
    """Fraction of the beat's IKr charge removed by the drug at ``conc_nM`` (free, nM)."""
    if conc_nM <= 0:
        return 0.0
    return float(np.clip(1.0 - ikr_charge(conc_nM, binding, cycle_ms) / _control_charge(cycle_ms), 0.0, 1.0))


GRID_LOG10_NM = np.arange(-4.0, 7.0 + 1e-9, 0.25)


@lru_cache(maxsize=64)
def block_curve(binding: HergBinding, cycle_ms: float = 1000.0) -> np.ndarray:
    """Steady-state block at the concentrations 10**GRID_LOG10_NM nM (a cached table per drug)."""
    return np.array([steady_state_block(10.0**lc, binding, cycle_ms) for lc in GRID_LOG10_NM])


@lru_cache(maxsize=64)
def _interpolator(binding: HergBinding, cycle_ms: float) -> PchipInterpolator:
    """Shape-preserving (monotone) cubic interpolation of the curve in log10 concentration."""
    return PchipInterpolator(GRID_LOG10_NM, block_curve(binding, cycle_ms))


def dynamic_block(conc_nM, binding: HergBinding, cycle_ms: float = 1000.0) -> np.ndarray:
    """Steady-state hERG block at free concentrations ``conc_nM`` (any shape), interpolated in log
    concentration on the drug's cached curve (0 at 0 nM)."""
    c = np.asarray(conc_nM, float)
    check_nonnegative("conc_free_nM", c)
    curve = block_curve(binding, cycle_ms)
    with np.errstate(divide="ignore"):
        lc = np.clip(np.log10(np.where(c > 0, c, 1.0)), GRID_LOG10_NM[0], GRID_LOG10_NM[-1])
    b = _interpolator(binding, cycle_ms)(lc)
    # below the grid the block falls to 0 linearly in concentration
    low = c < 10.0 ** GRID_LOG10_NM[0]
    b = np.where(low, curve[0] * c / 10.0 ** GRID_LOG10_NM[0], b)
    return np.clip(np.where(c > 0, b, 0.0), 0.0, 1.0)
