"""Fit the block→ECG map Δ(block) and the drugs' effect-compartment delays to the FDA study ECGRDVQ.

A mean virtual subject (baseline RR, PR, QRS, J-Tpeak and Tpeak-Tend = the fitting subjects' mean
pre-dose values) receives each study drug at its study dose: PK from the drug library → free effect-site
concentration (rate ke0 per drug) → Hill block (CiPA IC50s; ``get_drug``'s default static hERG model)
averaged over ``calibration.POPULATION_DRAWS`` subjects drawn with the library's PK variability, at the population's
mean drug sensitivity → Δ(block) → ECGSYN beat → ``measure``. The population average, not the typical
subject, is what a simulated trial's mean reads (the typical subject's peak is sharper and higher). The
map's coefficients and the drugs' ke0 are fitted jointly by bounded least squares
(scipy) to the observed mean placebo-corrected change from baseline over the post-dose times:
ΔΔQTcF (weight 1), ΔΔJ-Tpeak_c and ΔΔTpeak-Tend (0.7), ΔΔPR and ΔΔQRS (0.5), plus each drug's peak
ΔΔQTcF error (weight √30). The T-wave flattening φ is fixed (not identifiable from intervals). With
``exposure="measured"`` the block is averaged over the fitting subjects' own measured concentrations
(through the effect site) instead of the library's PK population.
``subjects`` restricts the fit to some subjects, ``drugs`` to some drugs (a drug left out keeps the
library's ke0): the out-of-fold and leave-one-drug-out checks of ``vtrial benchmark ecgrdvq``.
With ``potency=True`` each fitted drug also gets an in-vivo potency: a factor on the free effect-site
concentration its channels see (1: the CiPA IC50s at the free plasma concentration). It lumps what the
in-vitro profile cannot know — the spread of hERG IC50s between laboratories and protocols (several-fold
for the same drug), uncertain plasma binding, tissue uptake — and lets a drug whose effect tracks its
concentration (quinidine's ΔΔQTcF in this study) stay off the Hill curve's saturating part. A log-normal
prior centred on 1 (``POTENCY_PRIOR_SD_LOG``) keeps it there unless the data say otherwise; a drug the
fit did not fit has potency 1 in ``EpkFit.predict`` (``vtrial benchmark ecgrdvq`` gives a drug it leaves
out the geometric mean of the fitted drugs' potencies).
Pure computation (scipy); ``scripts/calibrate_epk.py`` writes the shipped coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
from scipy.optimize import brentq, least_squares

from vtrial.physiology.epk import EpkCoefficients
from vtrial.physiology.measured_exposure import effect_site, free_nM
from vtrial.sources.population import real_subject_sensitivity_cv
from vtrial.sources.study_table import measured_concentrations, placebo_corrected
from vtrial.spec.drugs import get_drug
from vtrial.studies.epk_calibration import (
    MORPHOLOGIES,
    interval_changes,
    mean_sensitivity,
    mean_subject,
    population_block,
)

DRUGS = ("dofetilide", "quinidine", "ranolazine", "verapamil")
WEIGHTS = {"qtcf_ms": 1.0, "jtpeakc_ms": 0.7, "tpte_ms": 0.7, "pr_ms": 0.5, "qrs_ms": 0.5}
T_FLATTENING = 0.3
PEAK_WEIGHT = math.sqrt(30.0)
# name, lower, upper, start (the drugs' log ke0 follow, one per fitted drug)
MAP_PARAMS = [
    ("jt_hERG", 0.0, 600.0, 120.0),
    ("jt_ICaL", -60.0, 0.0, -30.0),
    ("jt_INaL", -60.0, 0.0, -30.0),
    ("jt_IKs", 0.0, 600.0, 20.0),
    ("tp_hERG", 0.0, 600.0, 120.0),
    ("herg_gamma", -0.95, 30.0, 0.0),
    ("att_ICaL", 0.0, 20.0, 1.0),
    ("att_INaL", 0.0, 20.0, 1.0),
    ("qrs_INa", 0.0, 1.0, 0.5),
    ("pr_INa", 0.0, 600.0, 50.0),
    ("pr_ICaL", 0.0, 2000.0, 200.0),
]
# the ORd-based map (``EpkCoefficients.ord_jtpeak_gain``): two gains on the cell's ΔAPD90, QRS and PR terms
ORD_PARAMS = [
    ("ord_jt", 0.0, 5.0, 0.5),
    ("ord_tp", 0.0, 5.0, 0.2),
    ("qrs_INa", 0.0, 1.0, 0.5),
    ("pr_INa", 0.0, 600.0, 50.0),
    ("pr_ICaL", 0.0, 2000.0, 200.0),
]
MAP_MODELS = ("channels", "ord")
KE0_BOUNDS = (math.log(0.05), math.log(50.0))
POTENCY_BOUNDS = (math.log(0.1), math.log(10.0))
# the potency prior: log-normal, SD ln 3 (in-vitro hERG IC50s of one drug spread several-fold between labs),
# weighed as a residual of POTENCY_PRIOR_MS per prior SD (the size of a mean course's sampling error)
POTENCY_PRIOR_SD_LOG = math.log(3.0)
POTENCY_PRIOR_MS = 3.0
EXPOSURES = ("library", "measured")


@dataclass
class Observed:
    """The fitting subjects' mean virtual subject and their mean placebo-corrected changes per drug."""

    base: dict
    waves0: object
    obs: dict  # drug → {"time_h", and each WEIGHTS column}
    doses: dict  # drug → mg
    sensitivity: float  # the simulated population's mean drug sensitivity
    conc_free_nM: dict | None = None  # drug → the fitting subjects' measured free nM (N, T) at obs times, or None
    morphology: str = "ecgsyn"  # the beats the map is fitted through (``calibration.interval_changes``)


@dataclass
class EpkFit:
    coef: EpkCoefficients
    ke0_per_h: dict[str, float]
    data: Observed
    cost: float
    potency: dict[str, float] = field(default_factory=dict)  # drug → in-vivo potency (absent: 1)

    def predict(self, drug: str, ke0_per_h: float | None = None) -> dict[str, np.ndarray]:
        """The population's mean ΔΔ time courses for ``drug`` at the study dose and times (ke0: the fitted one)."""
        k = ke0_per_h if ke0_per_h is not None else self.ke0_per_h[drug]
        return _changes(self.data, drug, k, self.coef, self.potency.get(drug, 1.0))


def observed(table: pl.DataFrame, subjects=None, drugs=DRUGS, exposure: str = "library") -> Observed:
    """``table``: ``vtrial.sources.study_table.load_clinical_table``'s rows; ``subjects``: the fitting subjects (all);
    ``exposure``: ``"library"`` (the drug library's population PK) or ``"measured"`` (the fitting subjects'
    own measured concentrations, ``vtrial.physiology.measured_exposure``)."""
    if exposure not in EXPOSURES:
        raise ValueError(f"exposure = {exposure!r}; expected one of {', '.join(EXPOSURES)}")
    df = table if subjects is None else table.filter(pl.col("subject").is_in(list(subjects)))
    waves0, base = mean_subject(df)
    dd = placebo_corrected(df, columns=tuple(WEIGHTS) + ("rr_ms",))
    obs = {}
    for d in drugs:
        sub = dd.filter((pl.col("treatment") == d) & (pl.col("time_h") > 0)).sort("time_h")
        obs[d] = {"time_h": sub["time_h"].to_numpy(), **{c: sub[f"dd_{c}"].to_numpy() for c in WEIGHTS}}
    doses = {d: float(table.filter(pl.col("treatment") == d)["dose_mg"][0]) for d in drugs}
    conc = None
    if exposure == "measured":
        ids = sorted(df["subject"].unique().to_list())
        conc = {}
        for d in drugs:
            c = measured_free_nM(df, d, ids, obs[d]["time_h"])
            conc[d] = c[np.isfinite(c).all(axis=1)]
    return Observed(base, waves0, obs, doses, mean_sensitivity(real_subject_sensitivity_cv()), conc)


def measured_free_nM(table: pl.DataFrame, drug: str, subjects, times_h) -> np.ndarray:
    """The subjects' measured free concentrations of ``drug`` (nM) at ``times_h``, (len(subjects), T); NaN rows
    for subjects without that period (``ecgrdvq.measured_concentrations``)."""
    d = get_drug(drug)
    return free_nM(measured_concentrations(table, drug, subjects, times_h)[0], d.mw_g_mol, d.fu)


def _kappa(gamma: float) -> float:
    """The hERG response's κ from γ = 1/κ, the fitted parameter: γ in (−1, 0) convex, 0 linear, > 0 saturating."""
    return math.inf if abs(gamma) < 1e-9 else 1.0 / gamma


def _params(map_model: str) -> list:
    """The fitted map parameters (name, lower, upper, start) of ``map_model``, read at call time (scripts adjust them)."""
    return MAP_PARAMS if map_model == "channels" else ORD_PARAMS


def coefficients(
    x, drugs=DRUGS, relative_attenuation: bool = False, map_model: str = "channels"
) -> tuple[EpkCoefficients, dict[str, float]]:
    """The map and the drugs' ke0 from the fitted vector ``x`` (``_params(map_model)``, then one log ke0 per drug)."""
    names = [n for n, *_ in _params(map_model)]
    p = dict(zip(names, x))
    ke0 = {d: math.exp(v) for d, v in zip(drugs, x[len(names) :])}
    if map_model == "ord":
        return EpkCoefficients(
            qrs_fraction={"INa": p["qrs_INa"]},
            pr_ms={"INa": p["pr_INa"], "ICaL": p["pr_ICaL"]},
            t_flattening=T_FLATTENING,
            ord_jtpeak_gain=p["ord_jt"],
            ord_tpte_gain=p["ord_tp"],
        ), ke0
    coef = EpkCoefficients(
        jtpeak_ms={"hERG": p["jt_hERG"], "ICaL": p["jt_ICaL"], "INaL": p["jt_INaL"], "IKs": p["jt_IKs"]},
        tpte_ms={"hERG": p["tp_hERG"]},
        qrs_fraction={"INa": p["qrs_INa"]},
        attenuation={"ICaL": p["att_ICaL"], "INaL": p["att_INaL"]},
        pr_ms={"INa": p["pr_INa"], "ICaL": p["pr_ICaL"]},
        herg_saturation=_kappa(p["herg_gamma"]),
        t_flattening=T_FLATTENING,
        relative_attenuation=relative_attenuation,
    )
    return coef, ke0


def _changes(
    data: Observed, drug: str, ke0_per_h: float, coef: EpkCoefficients, potency: float = 1.0
) -> dict[str, np.ndarray]:
    """The simulated population's mean ΔΔ time courses for ``drug`` at the study dose and times: block averaged
    over the library's PK population, or over the fitting subjects' measured exposures (``potency``: the
    factor on the effect-site concentration, as in ``fit``)."""
    if data.conc_free_nM is not None:
        ce = effect_site(data.obs[drug]["time_h"], data.conc_free_nM[drug], ke0_per_h)
        block = get_drug(drug).block(potency * ce).mean(axis=0)
    else:
        block = population_block(get_drug(drug), data.doses[drug], data.obs[drug]["time_h"], ke0_per_h, potency=potency)
    return interval_changes(data.waves0, block, coef, sensitivity=data.sensitivity, morphology=data.morphology)


def _weighted_errors(
    data: Observed, coef: EpkCoefficients, ke0: dict[str, float], drugs, potency: dict[str, float] | None = None
) -> np.ndarray:
    potency = potency or {}
    res = []
    for d in drugs:
        pred = _changes(data, d, ke0[d], coef, potency.get(d, 1.0))
        for c, w in WEIGHTS.items():
            res.append(w * (pred[f"d_{c}"] - data.obs[d][c]))
        # the peak ΔΔQTcF is what safety decisions read: weigh its error like three time points
        res.append(np.atleast_1d(PEAK_WEIGHT * (pred["d_qtcf_ms"].max() - data.obs[d]["qtcf_ms"].max())))
        if d in potency:  # the log-normal prior on the drug's in-vivo potency
            res.append(np.atleast_1d(POTENCY_PRIOR_MS * math.log(potency[d]) / POTENCY_PRIOR_SD_LOG))
    r = np.concatenate(res)
    return np.where(np.isfinite(r), r, 1e3)


def potency_for_peak(
    data: Observed,
    drug: str,
    ke0_per_h: float,
    coef: EpkCoefficients,
    bounds: tuple[float, float] = (0.01, 100.0),
    grid: int = 17,
) -> float | None:
    """The in-vivo potency at which the map ``coef`` (delay ``ke0_per_h``) puts the simulated population's
    peak mean ΔΔQTcF of ``drug`` on ``data``'s observed peak: for a drug a map was not fitted on, how far its
    in-vivo potency must sit from the one it was given for the map to predict it. ``None`` where no potency
    in ``bounds`` reaches the observed peak. The root is bracketed on a grid of ``grid`` log-spaced potencies
    (the first crossing from below): at extreme block the beats can stop being measurable (NaN)."""
    target = float(np.max(data.obs[drug]["qtcf_ms"]))

    def gap(log_potency: float) -> float:
        return float(np.max(_changes(data, drug, ke0_per_h, coef, math.exp(log_potency))["d_qtcf_ms"])) - target

    x = np.linspace(math.log(bounds[0]), math.log(bounds[1]), grid)
    g = np.array([gap(v) for v in x])
    crossing = np.flatnonzero(np.isfinite(g[:-1]) & np.isfinite(g[1:]) & (g[:-1] < 0) & (g[1:] >= 0))
    if crossing.size == 0:
        return None
    i = int(crossing[0])
    return math.exp(brentq(gap, x[i], x[i + 1], xtol=1e-4))


def potencies(x, drugs=DRUGS, map_model: str = "channels") -> dict[str, float]:
    """The drugs' in-vivo potencies from the fitted vector ``x``: the log potencies after the log ke0s, when
    fitted (``fit(potency=True)``); else none (all 1)."""
    start = len(_params(map_model)) + len(drugs)
    return {d: math.exp(v) for d, v in zip(drugs, x[start:])}


def residuals(x, data: Observed, drugs=DRUGS, relative_attenuation: bool = False, map_model: str = "channels"):
    coef, ke0 = coefficients(x, drugs, relative_attenuation, map_model)
    return _weighted_errors(data, coef, ke0, drugs, potencies(x, drugs, map_model))


def fit_ke0(data: Observed, coef: EpkCoefficients, max_nfev: int = 200) -> dict[str, float]:
    """Each of ``data``'s drugs' ke0 for a given map ``coef`` (the shipped one, say, that a world model was
    trained on), fitted as ``fit`` fits it (``data``: ``observed``, or a fit's ``EpkFit.data``)."""
    drugs = tuple(data.obs)
    sol = least_squares(
        lambda x: _weighted_errors(data, coef, {d: math.exp(v) for d, v in zip(drugs, x)}, drugs),
        np.zeros(len(drugs)),
        bounds=KE0_BOUNDS,
        diff_step=1e-2,
        xtol=1e-10,
        ftol=1e-10,
        max_nfev=max_nfev,
    )
    return {d: math.exp(v) for d, v in zip(drugs, sol.x)}


def fit(
    table: pl.DataFrame,
    subjects=None,
    drugs=DRUGS,
    verbose: int = 0,
    max_nfev: int = 400,
    exposure: str = "library",
    relative_attenuation: bool = False,
    map_model: str = "channels",
    morphology: str = "ecgsyn",
    potency: bool = False,
) -> EpkFit:
    """Δ(block) coefficients and each of ``drugs``' ke0, fitted on ``subjects`` (default all) of ``table``;
    ``exposure`` as in ``observed``; ``relative_attenuation`` as in ``EpkCoefficients``; ``map_model``:
    ``"channels"`` (per-channel terms, ``MAP_PARAMS``) or ``"ord"`` (two gains on the ORd cell's ΔAPD90,
    ``ORD_PARAMS``); ``morphology``: the beats the map acts through (``calibration.interval_changes``:
    ``"ecgsyn"`` for the mechanistic sampler, ``"corpus"`` for a world model that follows its prior);
    ``potency``: fit each drug's in-vivo potency too (module docstring)."""
    if map_model not in MAP_MODELS:
        raise ValueError(f"map_model = {map_model!r}; expected one of {', '.join(MAP_MODELS)}")
    if morphology not in MORPHOLOGIES:
        raise ValueError(f"morphology = {morphology!r}; expected one of {', '.join(MORPHOLOGIES)}")
    drugs = tuple(drugs)
    data = replace(observed(table, subjects, drugs, exposure), morphology=morphology)
    params = _params(map_model) + [(f"log_ke0_{d}", *KE0_BOUNDS, 0.0) for d in drugs]
    if potency:
        params += [(f"log_potency_{d}", *POTENCY_BOUNDS, 0.0) for d in drugs]
    lo, hi, x0 = (np.array([p[i] for p in params]) for i in (1, 2, 3))
    sol = least_squares(
        residuals,
        x0,
        bounds=(lo, hi),
        args=(data, drugs, relative_attenuation, map_model),
        diff_step=1e-2,
        xtol=1e-10,
        ftol=1e-10,
        x_scale=np.maximum(np.abs(x0), 1.0),
        verbose=verbose,
        max_nfev=max_nfev,
    )
    coef, ke0 = coefficients(sol.x, drugs, relative_attenuation, map_model)
    return EpkFit(coef, ke0, data, float(sol.cost), potencies(sol.x, drugs, map_model))
