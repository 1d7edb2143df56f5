"""The built-in training corpus: (baseline beat, action, covariates, prior beat) → post-dose beat.

Post-dose beats come from a generator richer than the prior, so the model must learn beyond it: the
mechanistic post-dose beat plus effects ECGSYN's single Gaussian per wave cannot make — T-wave
asymmetry (a late second T component growing with hERG block), a bifid (notched) T at strong hERG
block, a U wave, ST depression with ICaL block; the beats the model sees carry beat-to-beat noise, and
the noise-free beats are kept as ground truth for measurement. The prior beat e_EPK is the
mechanistic beat alone. Every pair is drawn from a seed, so a corpus is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vtrial.cohort import load_population, sample_cohort
from vtrial.drugs import get_drug, known_drugs
from vtrial.physiology.block import CHANNELS, hill_block
from vtrial.physiology.ecgsyn import beat_times_s, ecgsyn_beat
from vtrial.physiology.epk import apply_block, default_coefficients
from vtrial.physiology.waves import Waves
from vtrial.protocol import COHORTS_DIR

FS_HZ = 250.0
WINDOW_S = (-0.4, 0.8)
N_SAMPLES = int(round((WINDOW_S[1] - WINDOW_S[0]) * FS_HZ))  # 300
HELDOUT_DRUGS = ("bepridil", "ondansetron", "mexiletine")  # one per CiPA risk category
HERG = CHANNELS.index("hERG")
ICAL = CHANNELS.index("ICaL")
ACTION_DIM = len(CHANNELS) + 3  # block fractions, log1p(conc), time since dose, log1p(dose)
COVARIATE_DIM = 4  # female, age/50, weight/70, RR (s)
NOISE_MV = 0.01  # beat-to-beat noise on the recorded beats (truth is also kept without it)


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

    def __len__(self):
        return self.baseline.shape[0]



def action_vector(block, conc_free_nM, time_since_dose_h, dose_mg) -> np.ndarray:
    """The action embedding's input: what a drug does (block) and how much of it there is."""
    return np.concatenate([np.asarray(block, float),
                           np.log1p(np.asarray(conc_free_nM, float))[:, None],
                           np.asarray(time_since_dose_h, float)[:, None] / 24.0,
                           np.log1p(np.asarray(dose_mg, float))[:, None]], axis=1)


def _gauss(t_ms: np.ndarray, center_ms, sigma_ms, height_mv):
    return height_mv[:, None] * np.exp(-0.5 * ((t_ms[None, :] - center_ms[:, None]) / sigma_ms[:, None]) ** 2)


def rich_effects(waves: Waves, block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Additive morphology the prior cannot express, (N, T) mV, given the post-dose waves and block."""
    t = (beat_times_s(FS_HZ, WINDOW_S, dtype=torch.float64).numpy()) * 1000.0
    n = waves.batch_size
    tt, st, ht = (waves.t_ms[:, 4].numpy(), waves.sigma_ms[:, 4].numpy(), waves.height_mv[:, 4].numpy())
    herg, ical = block[:, HERG], block[:, ICAL]
    late = _gauss(t, tt + 0.9 * st, 0.8 * st, ht * (0.15 + 0.6 * herg))  # asymmetric, late T component
    notch = _gauss(t, tt + 0.1 * st, 0.25 * st, -ht * 0.5 * np.clip(herg - 0.3, 0, None))  # bifid T
    u = _gauss(t, tt + 2.2 * st + 60, np.full(n, 35.0), 0.03 + 0.08 * herg)  # U wave
    j = waves.t_ms[:, 3].numpy() + 2 * waves.sigma_ms[:, 3].numpy()
    st_seg = -0.06 * ical[:, None] * ((t[None, :] > j[:, None]) & (t[None, :] < (tt - st)[:, None]))
    return late + notch + u + st_seg


def make_pairs(n: int, seed: int, drugs=None, population: str = "healthy_adults", max_multiple: float = 10.0) -> Pairs:
    """Draw n pairs: patients from the population, drugs from ``drugs`` (default: all but the held-out
    ones) at log-uniform multiples of their free Cmax (15% placebo), times since dose in 0.5–24 h."""
    rng = np.random.default_rng([seed, 0xC02])
    drugs = list(drugs if drugs is not None else [d for d in known_drugs() if d not in HELDOUT_DRUGS])
    cohort = sample_cohort(load_population(COHORTS_DIR / f"{population}.yaml"), n, seed)
    which = rng.integers(0, len(drugs), n)
    multiple = np.exp(rng.uniform(np.log(0.1), np.log(max_multiple), n)) * (rng.random(n) > 0.15)
    block = np.zeros((n, len(CHANNELS)))
    conc = np.zeros(n)
    for i, d in enumerate(drugs):
        rows = which == i
        drug = get_drug(d)
        conc[rows] = multiple[rows] * drug.free_cmax_nM
        block[rows] = hill_block(conc[rows], drug.ic50_vector, drug.hill_vector)
    tsd = rng.uniform(0.5, 24.0, n)
    dose = conc / 10.0  # a dose proxy (mg) consistent with exposure; the action mostly reads block and conc
    base = cohort.waves
    drugged = apply_block(base, block, default_coefficients())
    post = apply_block(base, block, default_coefficients(), cohort.sensitivity)
    baseline_clean = ecgsyn_beat(base.to_ecgsyn(), FS_HZ, WINDOW_S).numpy()
    baseline = baseline_clean + NOISE_MV * rng.standard_normal(baseline_clean.shape)
    prior = ecgsyn_beat(drugged.to_ecgsyn(), FS_HZ, WINDOW_S).numpy()
    target_clean = ecgsyn_beat(post.to_ecgsyn(), FS_HZ, WINDOW_S).numpy() + rich_effects(post, block, rng)
    target = target_clean + NOISE_MV * rng.standard_normal(target_clean.shape)
    cov = np.stack([(cohort.sex == "F").astype(float), cohort.age_y / 50.0, cohort.weight_kg / 70.0,
                    base.rr_s.numpy()], axis=1)

    def f32(x):
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)

    return Pairs(f32(baseline), f32(target), f32(prior), f32(action_vector(block, conc, tsd, dose)), f32(cov),
                 f32(base.rr_s.numpy() * 1000.0), [drugs[i] if multiple[k] > 0 else "placebo" for k, i in enumerate(which)],
                 base, block, conc, f32(baseline_clean), f32(target_clean))
