"""The built-in training corpus: (baseline beat, action, covariates, prior beat) → post-dose beat.

Post-dose beats come from a generator richer than the prior, so the model must learn beyond it: the
mechanistic post-dose beat plus effects ECGSYN's single Gaussian per wave cannot make — T-wave
asymmetry (a late second T component growing with hERG block), a bifid (notched) T at strong hERG
block, a U wave, ST depression with ICaL block. The drug-free part of that morphology (some T asymmetry, a small U wave)
belongs to the patient and is in the baseline beats too, so a placebo recording differs from the
baseline only by recording variability. Each recorded beat (baseline and post-dose) is one draw of the
patient's recording-to-recording variability — T-wave timing, width and height and R height jitter,
as replicate ECGs of one person at one time differ (within-subject QTcF SD ≈ 5 ms; these sizes give
4.6–5.0 ms) — plus white noise (instrument noise). Kept as ground truth: the jitter- and noise-free
beats (their measurements are the expected ones) and the recorded post-dose beat without its noise
(the observation a predictive interval must cover).

The virtual patient's drug sensitivity (drawn by the cohort, also used by the mechanistic sampler) is a
covariate, and the prior beat e_EPK is that patient's mechanistic beat: ECGSYN(ψ_patient ⊕ Δ(block)) with
the effect scaled by the sensitivity. With ``map_spread`` each pair has its own random Δ(block) map
(``random_map_shifts``) for both its prior beat and its post-dose beat, so the map is not a fact of the
corpus but an input: a model that reads the prior beat learns to follow whatever map it is given. Every
pair is drawn from a seed, so a corpus is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ecgsyn import beat_times_s, ecgsyn_beat
from vtrial.physiology.epk import apply_shifts, default_coefficients, interval_shifts
from vtrial.physiology.ord_surrogate import MAX_HERG_BLOCK_DRUGS, delta_apd90_ms
from vtrial.physiology.waves import Waves
from vtrial.sources.population import builtin_population, load_population, sample_cohort
from vtrial.spec.drugs import get_drug, known_drugs

FS_HZ = 250.0
WINDOW_S = (-0.4, 0.8)
N_SAMPLES = int(round((WINDOW_S[1] - WINDOW_S[0]) * FS_HZ))  # 300
HELDOUT_DRUGS = ("bepridil", "ondansetron", "mexiletine")  # one per CiPA risk category
HERG = CHANNELS.index("hERG")
ICAL = CHANNELS.index("ICaL")
ACTION_DIM = len(CHANNELS) + 3  # block fractions, log1p(conc), time since dose, log1p(dose)
COVARIATE_DIM = 5  # female, age/50, weight/70, RR (s), log drug sensitivity
NOISE_MV = 0.01  # white noise on the recorded beats (truth is also kept without it)
# recording-to-recording variability of one patient (SDs): T-wave centre (ms), T width and height and R
# height (log); the same sizes as the mechanistic sampler's within-patient defaults
JITTER_T_MS, JITTER_T_WIDTH, JITTER_T_HEIGHT, JITTER_R_HEIGHT = 4.0, 0.03, 0.05, 0.05


@dataclass
class Pairs:
    """A batch of training or evaluation pairs (tensors, float32)."""

    baseline: torch.Tensor  # (N, T) mV
    target: torch.Tensor  # (N, T) post-dose beat, mV
    prior: torch.Tensor  # (N, T) e_EPK, mV
    action: torch.Tensor  # (N, ACTION_DIM)
    covariates: torch.Tensor  # (N, COVARIATE_DIM)
    rr_ms: torch.Tensor  # (N,)
    drug: list
    waves: Waves | None = None  # baseline waves (for the mechanistic baseline in evaluation)
    block: np.ndarray | None = None  # (N, 7)
    conc_free_nM: np.ndarray | None = None
    baseline_clean: torch.Tensor | None = None  # the same beats without their measurement noise (ground truth)
    target_clean: torch.Tensor | None = None
    sensitivity: np.ndarray | None = None  # (N,) the patient's drug-effect multiplier
    target_observed: torch.Tensor | None = None  # the recorded post-dose beat without its white noise

    def __len__(self):
        return self.baseline.shape[0]


def action_vector(block, conc_free_nM, time_since_dose_h, dose_mg) -> np.ndarray:
    """The action embedding's input: what a drug does (block) and how much of it there is."""
    return np.concatenate(
        [
            np.asarray(block, float),
            np.log1p(np.asarray(conc_free_nM, float))[:, None],
            np.asarray(time_since_dose_h, float)[:, None] / 24.0,
            np.log1p(np.asarray(dose_mg, float))[:, None],
        ],
        axis=1,
    )


def covariate_vector(female, age_y, weight_kg, rr_s, sensitivity) -> np.ndarray:
    """The covariates the model is conditioned on, (N, COVARIATE_DIM); sensitivity 1 where unknown."""
    return np.stack(
        [
            np.asarray(female, float),
            np.asarray(age_y, float) / 50.0,
            np.asarray(weight_kg, float) / 70.0,
            np.asarray(rr_s, float),
            np.log(np.asarray(sensitivity, float)),
        ],
        axis=1,
    )


def recording_jitter(waves: Waves, rng: np.random.Generator) -> Waves:
    """One recording of each patient: the waves with recording-to-recording variability drawn from rng."""
    n = waves.batch_size
    t, sigma, height = waves.t_ms.clone(), waves.sigma_ms.clone(), waves.height_mv.clone()
    t[:, 4] += torch.as_tensor(JITTER_T_MS * rng.standard_normal(n), dtype=t.dtype)
    sigma[:, 4] *= torch.as_tensor(np.exp(JITTER_T_WIDTH * rng.standard_normal(n)), dtype=t.dtype)
    height[:, 4] *= torch.as_tensor(np.exp(JITTER_T_HEIGHT * rng.standard_normal(n)), dtype=t.dtype)
    height[:, 2] *= torch.as_tensor(np.exp(JITTER_R_HEIGHT * rng.standard_normal(n)), dtype=t.dtype)
    return Waves(t, sigma, height, waves.rr_s)


def _gauss(t_ms: np.ndarray, center_ms, sigma_ms, height_mv):
    return height_mv[:, None] * np.exp(-0.5 * ((t_ms[None, :] - center_ms[:, None]) / sigma_ms[:, None]) ** 2)


def rich_effects(
    waves: Waves, block: np.ndarray, rng: np.random.Generator | None = None, fs_hz: float = FS_HZ, window_s=WINDOW_S
) -> np.ndarray:
    """Additive morphology the prior cannot express, (N, T) mV, given the post-dose waves and block (a
    deterministic function of both; ``rng`` is not read), on the beat grid of ``fs_hz`` and ``window_s``."""
    t = (beat_times_s(fs_hz, window_s, dtype=torch.float64).numpy()) * 1000.0
    n = waves.batch_size
    tt, st, ht = (waves.t_ms[:, 4].numpy(), waves.sigma_ms[:, 4].numpy(), waves.height_mv[:, 4].numpy())
    herg, ical = block[:, HERG], block[:, ICAL]
    late = _gauss(t, tt + 0.9 * st, 0.8 * st, ht * (0.15 + 0.6 * herg))  # asymmetric, late T component
    notch = _gauss(t, tt + 0.1 * st, 0.25 * st, -ht * 0.5 * np.clip(herg - 0.3, 0, None))  # bifid T
    u = _gauss(t, tt + 2.2 * st + 60, np.full(n, 35.0), 0.03 + 0.08 * herg)  # U wave
    j = waves.t_ms[:, 3].numpy() + 2 * waves.sigma_ms[:, 3].numpy()
    st_seg = -0.06 * ical[:, None] * ((t[None, :] > j[:, None]) & (t[None, :] < (tt - st)[:, None]))
    return late + notch + u + st_seg


def virtual_compounds(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random in-vitro profiles at random free concentrations: (block (n, 7), conc_free_nM (n,)).

    Each channel is blocked with probability 0.6 (hERG 0.9), with IC50/C log-uniform in [0.1, 1000] and a
    Hill coefficient in [0.7, 1.3]; C is log-uniform in 0.1 nM–100 µM. Nine real drugs trace nine curves
    through the 7-channel block space; these fill it, so a drug never seen is an interpolation."""
    active = rng.random((n, len(CHANNELS))) < np.where(np.arange(len(CHANNELS)) == HERG, 0.9, 0.6)
    ratio = np.exp(rng.uniform(np.log(0.1), np.log(1000.0), (n, len(CHANNELS))))  # IC50 / C
    hill = rng.uniform(0.7, 1.3, (n, len(CHANNELS)))
    block = np.where(active, 1.0 / (1.0 + ratio**hill), 0.0)
    conc = np.exp(rng.uniform(np.log(0.1), np.log(1e5), n))
    return block, conc


ORD_GAIN_JTPEAK = (0.2, 1.2)  # random maps: ms of J-Tpeak per ms of ΔAPD90 (uniform range)
ORD_GAIN_TPTE = (0.0, 0.9)
TPTE_APD_FLOOR_MS = -40.0  # a shortened action potential narrows the T wave only so far


def random_map_shifts(block: np.ndarray, rr_s: np.ndarray, spread: float, rng: np.random.Generator) -> dict:
    """Interval changes of one random Δ(block) map per pair (the layout of ``epk.interval_shifts``).

    A map is not a fact the model may memorize: fits on other data, other exposure or another family
    (per-channel terms, the ORd cell) give other maps. Each pair's repolarization change is a random
    mixture w·(shipped map) + (1 − w)·(ORd cell map with random gains g_J ∈ ``ORD_GAIN_JTPEAK``, g_T ∈
    ``ORD_GAIN_TPTE``), w uniform; then every change (ΔJ-Tpeak, ΔTpeak-Tend, ΔPR, the QRS and T-height
    changes) is multiplied by its own log-normal factor of log-SD ``spread``. The prior beat and the
    post-dose beat both follow that map, so the map reaches the model only through the prior beat."""
    n = len(block)
    shipped = interval_shifts(block, default_coefficients(), rr_s)
    d_apd = delta_apd90_ms(np.minimum(block, [MAX_HERG_BLOCK_DRUGS] + [1.0] * (block.shape[1] - 1)))
    d_apd = np.where(block.any(axis=1), d_apd, 0.0)
    g_j, g_t = rng.uniform(*ORD_GAIN_JTPEAK, n), rng.uniform(*ORD_GAIN_TPTE, n)
    w = rng.uniform(0.0, 1.0, n)
    factor = np.exp(spread * rng.standard_normal((5, n)))
    rr = np.asarray(rr_s, float)
    return {
        "jtpeak_ms": factor[0] * (w * shipped["jtpeak_ms"] + (1 - w) * g_j * d_apd * rr**0.58),
        "tpte_ms": factor[1]
        * (w * shipped["tpte_ms"] + (1 - w) * g_t * np.maximum(d_apd, TPTE_APD_FLOOR_MS) * rr ** (1 / 3)),
        "qrs_scale": 1.0 + factor[2] * (shipped["qrs_scale"] - 1.0),
        "pr_ms": factor[3] * shipped["pr_ms"],
        "t_height_scale": 1.0 - factor[4] * (1.0 - shipped["t_height_scale"]),
    }


def make_pairs(
    n: int,
    seed: int,
    drugs=None,
    population: str = "healthy_adults",
    max_multiple: float = 10.0,
    virtual_fraction: float = 0.0,
    map_spread: float | None = None,
) -> Pairs:
    """Draw n pairs: patients from the population, drugs from ``drugs`` (default: all but the held-out
    ones) at log-uniform multiples of their free Cmax (15% placebo), times since dose in 0.5–24 h; a
    ``virtual_fraction`` of the drug pairs get a virtual compound instead (``virtual_compounds``).
    ``map_spread`` None: every pair follows the shipped Δ(block) map; a number: each pair its own random
    map (``random_map_shifts``)."""
    rng = np.random.default_rng([seed, 0xC02])
    jitter_rng = np.random.default_rng([seed, 0x7177])
    virtual_rng = np.random.default_rng([seed, 0x1A7])
    drugs = list(drugs if drugs is not None else [d for d in known_drugs() if d not in HELDOUT_DRUGS])
    cohort = sample_cohort(load_population(builtin_population(population)), n, seed)
    which = rng.integers(0, len(drugs), n)
    multiple = np.exp(rng.uniform(np.log(0.1), np.log(max_multiple), n)) * (rng.random(n) > 0.15)
    block = np.zeros((n, len(CHANNELS)))
    conc = np.zeros(n)
    for i, d in enumerate(drugs):
        rows = which == i
        drug = get_drug(d)
        conc[rows] = multiple[rows] * drug.free_cmax_nM
        block[rows] = drug.block(conc[rows])
    virtual = (virtual_rng.random(n) < virtual_fraction) & (multiple > 0)
    block[virtual], conc[virtual] = virtual_compounds(int(virtual.sum()), virtual_rng)
    tsd = rng.uniform(0.5, 24.0, n)
    dose = conc / 10.0  # a dose proxy (mg) consistent with exposure; the action mostly reads block and conc
    base = cohort.waves
    rr_s = base.rr_s.numpy()
    shifts = (
        interval_shifts(block, default_coefficients(), rr_s)
        if map_spread is None
        else random_map_shifts(block, rr_s, map_spread, np.random.default_rng([seed, 0x3A9]))
    )
    post = apply_shifts(base, shifts, cohort.sensitivity)

    def beat(waves):
        return ecgsyn_beat(waves.to_ecgsyn(), FS_HZ, WINDOW_S).numpy()

    # the drug-free part of the rich morphology (T asymmetry, U wave) is the patient's own: the baseline has it
    free = np.zeros_like(block)
    baseline_clean = beat(base) + rich_effects(base, free, rng)
    base_rec = recording_jitter(base, jitter_rng)
    baseline = beat(base_rec) + rich_effects(base_rec, free, rng) + NOISE_MV * rng.standard_normal(baseline_clean.shape)
    prior = beat(post)  # the patient's e_EPK
    target_clean = prior + rich_effects(post, block, rng)
    post_rec = recording_jitter(post, jitter_rng)
    target_observed = beat(post_rec) + rich_effects(post_rec, block, rng)
    target = target_observed + NOISE_MV * rng.standard_normal(target_clean.shape)
    cov = covariate_vector(cohort.sex == "F", cohort.age_y, cohort.weight_kg, base.rr_s.numpy(), cohort.sensitivity)

    def f32(x):
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)

    return Pairs(
        f32(baseline),
        f32(target),
        f32(prior),
        f32(action_vector(block, conc, tsd, dose)),
        f32(cov),
        f32(base.rr_s.numpy() * 1000.0),
        ["virtual" if virtual[k] else drugs[i] if multiple[k] > 0 else "placebo" for k, i in enumerate(which)],
        base,
        block,
        conc,
        f32(baseline_clean),
        f32(target_clean),
        cohort.sensitivity,
        f32(target_observed),
    )
