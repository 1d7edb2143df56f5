"""Deterministic time courses of a virtual subject: dose → PK → block → Δ(block) → beat → intervals.

Used to calibrate the map Δ(block) on a mean virtual subject of the FDA study (``scripts/calibrate_epk.py``)
and to check that calibration (``benchmarks/calibration_ecgrdvq.py``). Pure computation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from vtrial.model.corpus import FS_HZ as CORPUS_FS_HZ
from vtrial.model.corpus import WINDOW_S as CORPUS_WINDOW_S
from vtrial.model.corpus import rich_effects
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import EpkCoefficients, apply_block
from vtrial.physiology.fit import waves_for_intervals
from vtrial.physiology.pk import DoseEvent, concentrations, sample_individuals
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import measure
from vtrial.spec.drugs import Drug

WINDOW_S = (-0.5, 1.0)
POPULATION_STREAM = 0xCA1
POPULATION_DRAWS = 64
DELTA_COLUMNS = ("qtcf_ms", "jtpeakc_ms", "tpte_ms", "qrs_ms", "pr_ms")
MORPHOLOGIES = ("ecgsyn", "corpus")


def mean_subject(table) -> tuple[Waves, dict]:
    """The FDA study's mean virtual subject: a beat whose measured intervals are the mean pre-dose RR, PR,
    QRS, J-Tpeak and Tpeak-Tend of ``table`` (``ecgrdvq.load_clinical_table``); returns (waves, those means)."""
    import polars as pl

    base = (
        table.filter(pl.col("baseline"))
        .select("rr_ms", "pr_ms", "qrs_ms", "jtpeak_ms", "tpte_ms")
        .mean()
        .row(0, named=True)
    )
    waves, _ = waves_for_intervals(
        [base["rr_ms"]], [base["pr_ms"]], [base["qrs_ms"]], [base["jtpeak_ms"]], [base["tpte_ms"]], iterations=12
    )
    return waves, base


def population_block(
    drug: Drug,
    dose_mg: float,
    times_h,
    ke0_per_h: float | None = None,
    draws: int = POPULATION_DRAWS,
    seed: int = 0,
    potency: float = 1.0,
) -> np.ndarray:
    """Block (T, 7) averaged over ``draws`` subjects drawn with the drug's PK variability (fixed ``seed``,
    so a fit sees the same draws at every evaluation) after one oral dose: what the mean of a simulated
    population sees (the typical subject's block has a sharper, higher peak). ``potency`` multiplies the
    free effect-site concentration the channels see (``epk_fit``'s in-vivo potency; 1: the IC50s as measured)."""
    params = drug.pk_params()
    if ke0_per_h is not None:
        params = replace(params, ke0_per_h=ke0_per_h)
    rng = np.random.default_rng([seed, POPULATION_STREAM])
    conc = concentrations(
        sample_individuals(params, drug.variability(), draws, rng), [DoseEvent(0.0, dose_mg, "oral")], times_h
    ).conc_effect_free_nM
    return drug.block(potency * conc).mean(axis=0)


def mean_sensitivity(cv: float) -> float:
    """Mean of the log-normal drug-effect sensitivity with median 1 and coefficient of variation ``cv``."""
    return float(np.sqrt(1.0 + cv**2))


def interval_changes(
    waves0: Waves,
    block,
    coef: EpkCoefficients,
    fs_hz: float = 1000.0,
    sensitivity: float = 1.0,
    morphology: str = "ecgsyn",
) -> dict[str, np.ndarray]:
    """Measured change from baseline of each interval in ``DELTA_COLUMNS`` for one subject under block (T, 7);
    ``sensitivity`` multiplies the whole drug-induced change of the waves (``apply_block``). ``morphology``:
    ``"ecgsyn"``, the prior beat (what the mechanistic sampler draws); ``"corpus"``, the prior beat plus the
    world-model corpus's richer morphology (``corpus.rich_effects``: late and notched T, U wave, ST
    depression, growing with block) — the beat a world model trained on that corpus draws for that map."""
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"morphology = {morphology!r}; expected one of {', '.join(MORPHOLOGIES)}")
    block = np.asarray(block, float)
    n = block.shape[0]
    rep = Waves(
        waves0.t_ms.expand(n + 1, -1),
        waves0.sigma_ms.expand(n + 1, -1),
        waves0.height_mv.expand(n + 1, -1),
        waves0.rr_s.expand(n + 1),
    )
    full = np.vstack([np.zeros((1, block.shape[1])), block])
    drugged = apply_block(rep, full, coef, np.full(n + 1, sensitivity))
    if morphology == "corpus":  # on the corpus's own beat grid, as the world model draws and measures it
        fs_hz, window_s = CORPUS_FS_HZ, CORPUS_WINDOW_S
        beats = ecgsyn_beat(drugged.to_ecgsyn(), fs_hz, window_s)
        beats = beats + torch.as_tensor(rich_effects(drugged, full), dtype=beats.dtype)
    else:
        window_s = WINDOW_S
        beats = ecgsyn_beat(drugged.to_ecgsyn(), fs_hz, window_s)
    m = measure(beats, fs_hz, float(waves0.rr_s[0]) * 1000.0, window_start_s=window_s[0])
    out = {f"d_{c}": m[c][1:] - m[c][0] for c in DELTA_COLUMNS}
    out["valid"] = m["valid"][1:] & m["valid"][0]
    return out
