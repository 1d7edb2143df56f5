"""The drug library: ion-channel profiles, exposure and PK of built-in drugs, plus inline drugs.

Built-ins live in ``vtrial/data/drugs.json`` (written by ``scripts/build_drug_library.py``): the 12 CiPA
training drugs (IC50s and Hill coefficients from Li et al. 2017, their hERG binding kinetics from the
same paper in ``herg_kinetics.json``, free therapeutic Cmax and TdP category from Li et al. 2019) and,
for the four drugs of the FDA study ECGRDVQ, oral PK fitted to its plasma concentrations. A protocol may
define a new compound inline from its in-vitro profile with ``Drug.from_dict``.

A drug's block (``Drug.block``) is the Hill equation per channel, except hERG when the drug carries binding
kinetics (``herg_binding``): then the steady-state block of the paced dynamic hERG model
(``vtrial.physiology.herg``), which accounts for trapping and slow binding. Built-ins carry them only when
asked (``get_drug(name, herg_model="dynamic")``; a protocol's ``herg_model``): the block→ECG map is
calibrated with Hill block, and the dynamic model is the alternative CiPA recommends.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources

import numpy as np

from vtrial.physiology.block import CHANNELS, hill_block
from vtrial.physiology.checks import check_fraction, check_positive
from vtrial.physiology.herg import HergBinding, dynamic_block
from vtrial.physiology.ord_surrogate import MAX_HERG_BLOCK_DRUGS
from vtrial.physiology.pk import PKParams, Variability

TDP_CATEGORIES = {0: "low", 1: "intermediate", 2: "high"}
HERG_MODELS = ("static", "dynamic")


@dataclass(frozen=True)
class DrugPK:
    """Typical oral PK (apparent CL/F, V/F relative to the base-equivalent dose) and its variability."""

    ka_per_h: float
    cl_l_h: float
    v1_l: float
    tlag_h: float = 0.0
    q_l_h: float = 0.0
    v2_l: float = 1.0
    ke0_per_h: float = math.inf
    omega_cl: float = 0.0
    omega_v: float = 0.0
    omega_ka: float = 0.0
    source: str = ""

    def __post_init__(self):
        for name in ("ka_per_h", "cl_l_h", "v1_l", "v2_l"):
            check_positive(f"pk.{name}", getattr(self, name))
        if not self.ke0_per_h > 0:  # inf (no effect delay) is allowed
            raise ValueError(f"pk.ke0_per_h = {self.ke0_per_h!r} must be > 0")


@dataclass(frozen=True)
class Drug:
    """A compound: ion-channel profile (nM), physico-chemistry and, when known, PK."""

    name: str
    ic50_nM: dict[str, float]
    hill: dict[str, float]
    mw_g_mol: float
    fu: float
    salt_factor: float = 1.0
    free_cmax_nM: float | None = None
    tdp_category: int | None = None
    pk: DrugPK | None = None
    herg_binding: HergBinding | None = None
    references: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = sorted(set(self.ic50_nM) - set(CHANNELS)) + sorted(set(self.hill) - set(CHANNELS))
        if unknown:
            raise ValueError(f"drug {self.name!r}: unknown channels {unknown}; known: {', '.join(CHANNELS)}")
        for ch, v in self.ic50_nM.items():
            if v is not None and not (v >= 0):
                raise ValueError(f"drug {self.name!r}: ic50_nM.{ch} = {v!r} must be >= 0 (0 or missing: no block)")
        check_positive(f"drug {self.name!r}: mw_g_mol", self.mw_g_mol)
        check_fraction(f"drug {self.name!r}: fu", self.fu)
        check_fraction(f"drug {self.name!r}: salt_factor", self.salt_factor)

    @property
    def ic50_vector(self) -> np.ndarray:
        """IC50 per channel in ``CHANNELS`` order, NaN = no block."""
        return np.array([_num(self.ic50_nM.get(ch)) for ch in CHANNELS])

    @property
    def hill_vector(self) -> np.ndarray:
        return np.array([_num(self.hill.get(ch), default=1.0) for ch in CHANNELS])

    def block(self, conc_free_nM) -> np.ndarray:
        """Fraction of each channel blocked at free concentrations ``conc_free_nM`` (...,) nM: (..., 7)."""
        b = hill_block(conc_free_nM, self.ic50_vector, self.hill_vector)
        if self.herg_binding is not None:
            b[..., CHANNELS.index("hERG")] = dynamic_block(conc_free_nM, self.herg_binding)
        return b

    @property
    def tdp_label(self) -> str | None:
        return None if self.tdp_category is None else TDP_CATEGORIES[self.tdp_category]

    def pk_params(self) -> PKParams:
        """Typical-value PK parameters (B = 1); raises if the drug has no PK."""
        if self.pk is None:
            raise ValueError(
                f"drug {self.name!r} has no PK parameters; give a fixed exposure "
                f"(e.g. multiples of free Cmax) or define its pk inline"
            )
        p = self.pk
        return PKParams(
            cl_l_h=np.array([p.cl_l_h]),
            v1_l=np.array([p.v1_l]),
            ka_per_h=np.array([p.ka_per_h]),
            q_l_h=p.q_l_h,
            v2_l=p.v2_l,
            ke0_per_h=p.ke0_per_h,
            tlag_h=p.tlag_h,
            f_bio=self.salt_factor,
            fu=self.fu,
            mw_g_mol=self.mw_g_mol,
        )

    def variability(self) -> Variability:
        p = self.pk
        return Variability(p.omega_cl, p.omega_v, p.omega_ka) if p else Variability()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        return d

    @staticmethod
    def from_dict(d: dict) -> Drug:
        d = dict(d)
        pk = d.pop("pk", None)
        if pk is not None and not isinstance(pk, DrugPK):
            pk = DrugPK(**pk)
        binding = d.pop("herg_binding", None)
        if binding is not None:
            binding = HergBinding.from_dict(binding)
        return Drug(pk=pk, herg_binding=binding, references=tuple(d.pop("references", ())), **d)


def _num(v, default=math.nan) -> float:
    return default if v is None else float(v)


@lru_cache(maxsize=1)
def _library() -> dict[str, Drug]:
    text = resources.files("vtrial.data").joinpath("drugs.json").read_text()
    raw = json.loads(text)
    return {name: Drug.from_dict({"name": name, **entry}) for name, entry in raw["drugs"].items()}


@lru_cache(maxsize=1)
def _herg_kinetics() -> dict[str, HergBinding]:
    text = resources.files("vtrial.data").joinpath("herg_kinetics.json").read_text()
    return {name: HergBinding.from_dict(v) for name, v in json.loads(text)["drugs"].items()}


def known_drugs() -> list[str]:
    return sorted(_library())


def get_drug(name: str, herg_model: str = "static") -> Drug:
    """A built-in drug by name (case-insensitive); unknown names list the known ones. ``herg_model``:
    ``"static"`` blocks hERG by the Hill equation, ``"dynamic"`` by the paced CiPA dynamic hERG model with
    the drug's binding kinetics (``vtrial/data/herg_kinetics.json``; Hill for a drug without them)."""
    if herg_model not in HERG_MODELS:
        raise ValueError(f"herg_model = {herg_model!r} is not one of {', '.join(HERG_MODELS)}")
    lib = _library()
    key = name.strip().lower()
    if key not in lib:
        close = difflib.get_close_matches(key, lib, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown drug {name!r}.{hint} Known drugs: {', '.join(sorted(lib))}")
    drug = lib[key]
    if herg_model == "dynamic" and key in _herg_kinetics():
        drug = replace(drug, herg_binding=_herg_kinetics()[key])
    return drug


def drug_curve_blocks(multiples_of_cmax) -> list[tuple[str, float, np.ndarray]]:
    """(drug, free nM, block (7,)) for each library drug with a free Cmax at these multiples of it, where its
    hERG block stays ≤ ``MAX_HERG_BLOCK_DRUGS``."""
    rows = []
    for name in known_drugs():
        d = get_drug(name)
        if d.free_cmax_nM is None or not d.free_cmax_nM > 0:
            continue
        for c in d.free_cmax_nM * np.asarray(multiples_of_cmax, float):
            b = d.block(c)
            if b[0] <= MAX_HERG_BLOCK_DRUGS:
                rows.append((name, float(c), b))
    return rows


def _plain(v: float) -> str:
    """A concentration as people write it: 3 significant digits, thousands separated, no exponent."""
    return f"{float(f'{v:.3g}'):,.0f}" if v >= 100 else f"{v:.3g}"


def drug_table(herg_model: str = "static") -> list[dict[str, str]]:
    """One row of text per built-in drug (``vtrial drugs``): TdP risk, the channels it blocks with their
    IC50s, free Cmax, whether it carries PK and hERG binding kinetics, and its sources."""
    rows = []
    kinetics = _herg_kinetics()
    for name in known_drugs():
        d = get_drug(name, herg_model)
        blocked = [f"{ch} {_plain(v)}" for ch, v in d.ic50_nM.items() if v is not None and v > 0]
        rows.append(
            {
                "drug": name,
                "tdp_risk": d.tdp_label or "—",
                "channels": ", ".join(blocked) or "none",
                "free_cmax_nM": "—" if d.free_cmax_nM is None else f"{d.free_cmax_nM:.3g}",
                "pk": "no"
                if d.pk is None
                else f"yes (ke0 {d.pk.ke0_per_h:.3g}/h)"
                if math.isfinite(d.pk.ke0_per_h)
                else "yes",
                "herg_kinetics": ("yes, used" if d.herg_binding is not None else "yes (--herg-model dynamic)")
                if name in kinetics
                else "no",
                "sources": "; ".join(d.references),
            }
        )
    return rows
