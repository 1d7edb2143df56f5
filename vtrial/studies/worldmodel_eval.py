"""``vtrial eval``: the world model against ground truth, with and without the prior, and the mechanistic
baseline that uses the prior alone.

Ground truth is the built-in corpus's rich generator, measured on its noise-free beats. ``heldout``: new patients given the drugs held out
of training (``corpus.HELDOUT_DRUGS``), simulated from their in-vitro profiles; ``train``: new patients
given the training drugs. For each pair, S samples; metrics:

- ``latent_mse``: ‖z_sample − z_true‖²/D (normalized latents), averaged over samples and pairs;
- ``signal_mse``, ``signal_mae``: sampled beat vs true post-dose beat, mV;
- ``dqtcf_mae_ms``, ``djtpeakc_mae_ms``, ``dtpte_mae_ms``: |mean over samples of Δ − true Δ|. The true Δ
  is target minus baseline beat; a sampler's Δ is its sample minus its own drug-free samples of the same
  patient (zero action), exactly as a trial computes ΔQTcF from each patient's pre-dose ECGs, so a
  decoder's constant bias cancels as it does in a trial;
- ``hallucination_rate``: share of sampled beats unmeasurable or outside physiological ranges
  (QTcF 300–700 ms, QRS 50–200 ms, Tpeak-Tend 20–250 ms); ``n_true_out_of_range`` counts the pairs
  whose noise-free ground truth itself breaks those ranges (samples that follow it count as hallucinated);
- ``energy``: ‖z_sample − Π_ϕ(e_EPK)‖²/D;
- ``crps_dqtcf_ms``, ``brier_dqtcf_gt_30``, ``brier_dqtcf_gt_60``: CRPS of the sampled ΔQTcF and Brier
  scores of P(ΔQTcF > 30 / 60 ms), against the observed ΔQTcF below (``vtrial.stats.scoring``);
- ``coverage90``: share of pairs whose observed ΔQTcF lies within the samples' 90 % predictive interval
  (``vtrial.stats.scoring.interval_coverage``: ends at plotting positions p·(S+1), exact for a new draw; needs
  S ≥ 19, and ``vtrial eval`` uses 64). A
  predictive interval is for an observation, so the observed value is the recorded post-dose beat (one
  draw of the patient's recording-to-recording variability; without the instrument's white noise, which
  the smooth decoder does not model) measured against the patient's true baseline — as a sampled Δ is a
  sample measured against the mean of the drug-free samples.
"""

from __future__ import annotations

import numpy as np
import torch

from vtrial.model.corpus import FS_HZ, HELDOUT_DRUGS, WINDOW_S, Pairs, action_vector, make_pairs
from vtrial.model.network import WorldModel
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sampling.worldmodel import sampler_settings
from vtrial.signal.measure import measure
from vtrial.stats.scoring import calibration

METRICS = (
    "latent_mse",
    "signal_mse",
    "signal_mae",
    "dqtcf_mae_ms",
    "djtpeakc_mae_ms",
    "dtpte_mae_ms",
    "hallucination_rate",
    "energy",
    "coverage90",
)
RANGES = {"qtcf_ms": (300.0, 700.0), "qrs_ms": (50.0, 200.0), "tpte_ms": (20.0, 250.0)}


def implausible(m: dict) -> np.ndarray:
    """Beats that are unmeasurable or outside the physiological ``RANGES``."""
    bad = ~m["valid"]
    for col, (lo, hi) in RANGES.items():
        bad |= ~((m[col] >= lo) & (m[col] <= hi))
    return bad


def _measure(beats: torch.Tensor, rr_ms: np.ndarray) -> dict:
    return measure(beats, FS_HZ, rr_ms, window_start_s=WINDOW_S[0])


def mechanistic_samples(pairs: Pairs, s: int, seed: int) -> torch.Tensor:
    """S mechanistic samples per pair (the prior with within-patient variability), (N·S, T)."""
    n = len(pairs)
    w = pairs.waves
    units = {
        "arm_idx": np.zeros(n, int),
        "patient": np.arange(n),
        "time_idx": np.ones(n, int),
        "time_h": np.ones(n),
        "conc_free_nM": pairs.conc_free_nM,
        "block": pairs.block,
        "t_ms": w.t_ms.numpy(),
        "sigma_ms": w.sigma_ms.numpy(),
        "height_mv": w.height_mv.numpy(),
        "rr_s": w.rr_s.numpy(),
        "sensitivity": pairs.sensitivity if pairs.sensitivity is not None else np.ones(n),
    }
    return MechanisticSampler(s, FS_HZ).beats(units, seed)[0]


def score(
    samples: torch.Tensor,
    z_samples: torch.Tensor,
    p_latent: torch.Tensor,
    pairs: Pairs,
    model: WorldModel,
    s: int,
    reference: torch.Tensor,
) -> tuple[dict, dict]:
    """(metrics, per-pair arrays for paired comparisons); ``reference``: the sampler's drug-free samples
    (N·S, T), Δ's reference."""
    n = len(pairs)
    rr = pairs.rr_ms.numpy()
    base_truth = pairs.baseline_clean if pairs.baseline_clean is not None else pairs.baseline
    target_truth = pairs.target_clean if pairs.target_clean is not None else pairs.target
    m_base = _measure(base_truth, rr)
    m_true = _measure(target_truth, rr)
    m_obs = _measure(pairs.target_observed if pairs.target_observed is not None else pairs.target, rr)
    m_smp = _measure(samples, np.repeat(rr, s))
    m_ref = _measure(reference, np.repeat(rr, s))
    with torch.no_grad():
        z_true = model.latent(pairs.target)
    out = {
        "latent_mse": float(((z_samples.view(n, s, -1) - z_true[:, None]) ** 2).mean()),
        "signal_mse": float(((samples.view(n, s, -1) - pairs.target[:, None]) ** 2).mean()),
        "signal_mae": float((samples.view(n, s, -1) - pairs.target[:, None]).abs().mean()),
        "energy": float(((z_samples.view(n, s, -1) - p_latent[:, None]) ** 2).mean()),
    }
    for name, col in (("dqtcf_mae_ms", "qtcf_ms"), ("djtpeakc_mae_ms", "jtpeakc_ms"), ("dtpte_mae_ms", "tpte_ms")):
        true_d = m_true[col] - m_base[col]
        ref = np.nanmean(m_ref[col].reshape(n, s), axis=1)
        smp_d = m_smp[col].reshape(n, s) - ref[:, None]
        est = np.nanmean(smp_d, axis=1)
        ok = np.isfinite(true_d) & np.isfinite(est)
        out[name] = float(np.mean(np.abs(est[ok] - true_d[ok])))
        if col == "qtcf_ms":
            dq_est, dq_true = est, true_d
            obs_d = m_obs[col] - m_base[col]
            ok = np.isfinite(obs_d) & np.isfinite(est)
            cal, _ = calibration(smp_d[ok], obs_d[ok], {"dqtcf_gt_30": 30.0, "dqtcf_gt_60": 60.0})
            out["coverage90"] = cal["coverage90"]
            out["crps_dqtcf_ms"] = cal["crps"]
            out["brier_dqtcf_gt_30"] = cal["brier.dqtcf_gt_30"]
            out["brier_dqtcf_gt_60"] = cal["brier.dqtcf_gt_60"]
    bad = implausible(m_smp).reshape(n, s)
    true_bad = implausible(m_true)
    out["hallucination_rate"] = float(np.mean(bad))
    # context: the same rate on the pairs whose noise-free ground truth keeps to the ranges (a sample that
    # follows an out-of-range truth is counted above, though it is right)
    out["hallucination_rate_truth_in_range"] = float(np.mean(bad[~true_bad])) if (~true_bad).any() else float("nan")
    out["n_pairs"] = n
    out["n_true_unmeasurable"] = int((~m_true["valid"]).sum())
    out["n_true_out_of_range"] = int(true_bad.sum())
    per_pair = {"dqtcf_abs_err_ms": np.abs(dq_est - dq_true), "implausible_share": bad.mean(axis=1)}
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}, per_pair


def evaluate_model(
    model: WorldModel, pairs: Pairs, s: int, seed: int, eta: float, gamma: float, steps: int, temperature: float = 1.0
) -> tuple[dict, dict]:
    n = len(pairs)
    d = model.model_args["latent_dim"]
    rng = np.random.default_rng([seed, 0xE7A1])
    noise = torch.as_tensor(rng.standard_normal((steps + 1, n * s, d), dtype=np.float32))

    free = drug_free(pairs)
    rng0 = np.random.default_rng([seed, 0xE7A2])
    noise0 = torch.as_tensor(rng0.standard_normal((steps + 1, n * s, d), dtype=np.float32))
    with torch.inference_mode():
        beats, z, p = model.sample(
            pairs.baseline,
            pairs.prior,
            pairs.action,
            pairs.covariates,
            noise,
            steps,
            eta,
            gamma,
            samples_per_unit=s,
            temperature=temperature,
        )
        ref = model.sample(
            free.baseline,
            free.prior,
            free.action,
            free.covariates,
            noise0,
            steps,
            eta,
            gamma,
            samples_per_unit=s,
            temperature=temperature,
        )[0]
    return score(beats, z, p, pairs, model, s, ref)


def drug_free(pairs: Pairs) -> Pairs:
    """The same patients without drug: zero block and concentration, prior = the baseline's ECGSYN beat."""
    n = len(pairs)
    zero = np.zeros_like(pairs.block)
    action = torch.as_tensor(action_vector(zero, np.zeros(n), np.zeros(n), np.zeros(n)), dtype=torch.float32)
    prior = ecgsyn_beat(pairs.waves.to_ecgsyn(), FS_HZ, WINDOW_S).float()
    return Pairs(
        pairs.baseline,
        pairs.baseline,
        prior,
        action,
        pairs.covariates,
        pairs.rr_ms,
        ["placebo"] * n,
        pairs.waves,
        zero,
        np.zeros(n),
        sensitivity=pairs.sensitivity,
    )


def evaluate_mechanistic(model: WorldModel, pairs: Pairs, s: int, seed: int) -> tuple[dict, dict]:
    beats = mechanistic_samples(pairs, s, seed).float()
    ref = mechanistic_samples(drug_free(pairs), s, seed + 1).float()
    with torch.inference_mode():
        z = model.latent(beats)
        p = model.prior_latent(pairs.prior)
    return score(beats, z, p, pairs, model, s, ref)


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int, reps: int = 2000) -> dict:
    """Mean of a − b over pairs with a 95 % paired-bootstrap interval (resampling the pairs)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    rng = np.random.default_rng([seed, 0xB007])
    boot = d[rng.integers(0, len(d), (reps, len(d)))].mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"mean": round(float(d.mean()), 6), "ci95": [round(float(lo), 6), round(float(hi), 6)]}


def evaluate(
    prior_model: WorldModel,
    ablation_model: WorldModel | None,
    n_pairs: int = 1000,
    samples: int = 64,
    seed: int = 1000,
    eta: float = 1.0,
    gamma: float | None = None,
    steps: int = 20,
    train_drugs=None,
    temperature: float | None = None,
) -> dict:
    """The eval.json layout: {"heldout": {"prior", "ablation", "mechanistic"}, "train": {...}}, and where an
    ablation is given, ``prior_minus_ablation``: paired differences on the same held-out pairs and draws
    (negative = the prior helps) with 95 % bootstrap intervals, so "lower with the prior" can be read
    against its noise. ``gamma`` and ``temperature`` default to each checkpoint's own (``sampler_settings``);
    the ablation is always sampled without guidance (γ = 0)."""
    cfg = sampler_settings(prior_model, {"gamma": gamma, "temperature": temperature})
    gamma, temperature = cfg["gamma"], cfg["temperature"]
    heldout = make_pairs(n_pairs, seed, drugs=HELDOUT_DRUGS)
    train = make_pairs(n_pairs, seed + 1, drugs=train_drugs)
    prior, prior_pp = evaluate_model(prior_model, heldout, samples, seed, eta, gamma, steps, temperature)
    result = {"heldout": {"prior": prior}}
    abl_temperature = None
    if ablation_model is not None:
        abl_temperature = sampler_settings(ablation_model)["temperature"]
        result["heldout"]["ablation"], abl_pp = evaluate_model(
            ablation_model, heldout, samples, seed, eta, 0.0, steps, abl_temperature
        )
        result["prior_minus_ablation"] = {
            "dqtcf_mae_ms": paired_difference(prior_pp["dqtcf_abs_err_ms"], abl_pp["dqtcf_abs_err_ms"], seed),
            "hallucination_rate": paired_difference(prior_pp["implausible_share"], abl_pp["implausible_share"], seed),
        }
    result["heldout"]["mechanistic"] = evaluate_mechanistic(prior_model, heldout, samples, seed)[0]
    result["train"] = evaluate_model(prior_model, train, samples, seed, eta, gamma, steps, temperature)[0]
    result["settings"] = {
        "n_pairs": n_pairs,
        "samples": samples,
        "seed": seed,
        "eta": eta,
        "gamma": gamma,
        "temperature": temperature,
        "ablation_temperature": abl_temperature,
        "steps": steps,
        "heldout_drugs": list(HELDOUT_DRUGS),
    }
    return result
