"""Trial protocols: YAML → a validated, immutable ``Protocol``; ``expand`` → work units.

Validation happens before any work is built and reports *every* problem with its field path
(``arms[1].drugs[0].dose.unit``), the YAML line and column for malformed files, and the nearest valid
key for a misspelt one. Models are frozen pydantic models; ``content_hash`` identifies the trial by
what determines its samples (not its file's whitespace or comments, nor where or how it is computed).

Pure: nothing here reads the disk beyond the protocol file itself. Whether the files a protocol names
exist is checked by ``vtrial.sources.locate`` (cohort data) and ``vtrial.sampling.registry``
(checkpoints); ``vtrial.trial.load_protocol`` runs all three.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vtrial.physiology.block import CHANNELS
from vtrial.spec.drugs import Drug, DrugPK, get_drug, known_drugs
from vtrial.spec.samplers import DEFAULT_SAMPLER, SAMPLER_SETTINGS, SAMPLERS, unknown_settings

DOSE_UNITS_TO_MG = {"ng": 1e-6, "ug": 1e-3, "µg": 1e-3, "mcg": 1e-3, "mg": 1.0, "g": 1e3}
ENDPOINTS = (
    "qtcf",
    "dqtcf",
    "ddqtcf",
    "jtpeakc",
    "tpte",
    "qrs",
    "pr",
    "hr",
    "qtcf_gt_450",
    "qtcf_gt_480",
    "qtcf_gt_500",
    "dqtcf_gt_30",
    "dqtcf_gt_60",
)


MAX_PROTOCOL_BYTES = 4_000_000  # a protocol of thousands of arms is a few hundred kB


class ProtocolError(ValueError):
    """A protocol that cannot run; ``problems`` lists each as 'field.path: message'."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    # every number finite: a NaN or infinite dose, time or setting is refused here, not after the sampling
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Dose(_Model):
    value: float = Field(gt=0, description="amount of the administered form")
    unit: str = "mg"

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        if v not in DOSE_UNITS_TO_MG:
            raise ValueError(f"unknown unit {v!r}; use one of {', '.join(DOSE_UNITS_TO_MG)}")
        return v

    @property
    def mg(self) -> float:
        return self.value * DOSE_UNITS_TO_MG[self.unit]


class Regimen(_Model):
    type: Literal["single", "repeated"] = "single"
    interval_h: float | None = Field(default=None, gt=0)
    count: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _repeated(self):
        if self.type == "repeated" and (self.interval_h is None or self.count < 2):
            raise ValueError("a repeated regimen needs interval_h > 0 and count >= 2")
        if self.type == "single" and self.count != 1:
            raise ValueError("a single regimen has count 1; use type: repeated")
        return self


class FixedExposure(_Model):
    """A fixed free concentration instead of PK: a multiple of the drug's free Cmax, or nM."""

    multiple_of_free_cmax: float | None = Field(default=None, gt=0)
    conc_free_nM: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.multiple_of_free_cmax is None) == (self.conc_free_nM is None):
            raise ValueError("give exactly one of multiple_of_free_cmax or conc_free_nM")
        return self


class ArmDrug(_Model):
    drug: str
    dose: Dose | None = None
    route: Literal["oral", "iv_bolus", "iv_infusion"] = "oral"
    infusion_h: float | None = Field(default=None, gt=0)
    regimen: Regimen = Regimen()
    start_h: float = 0.0
    exposure: FixedExposure | None = None

    @model_validator(mode="after")
    def _dose_or_exposure(self):
        if (self.dose is None) == (self.exposure is None):
            raise ValueError("give either dose (with PK) or exposure (fixed concentration), not both")
        if self.route == "iv_infusion" and self.infusion_h is None:
            raise ValueError("an iv_infusion needs infusion_h")
        return self


class Arm(_Model):
    name: str = Field(min_length=1)
    placebo: bool = False
    drugs: tuple[ArmDrug, ...] = ()

    @model_validator(mode="after")
    def _placebo(self):
        if self.placebo and self.drugs:
            raise ValueError("a placebo arm takes no drugs")
        if not self.placebo and not self.drugs:
            raise ValueError("an arm needs drugs, or placebo: true")
        return self


class CohortSpec(_Model):
    """Who takes part, from one source: a synthetic ``population`` (a built-in name or a YAML file)
    of ``size`` patients; the subjects of a clinical ``table`` in the FDA study's layout; or the records
    of a ``wfdb`` folder, measured on ``lead``. For a table or a folder, ``size`` takes the first usable
    subjects or records (default: all of them; a run fills it in)."""

    population: str | None = None
    table: str | None = None
    wfdb: str | None = None
    lead: str | None = None
    size: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_population(cls, data):
        if isinstance(data, dict) and all(data.get(k) is None for k in ("population", "table", "wfdb")):
            data = {**data, "population": "healthy_adults"}
        return data

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("population", "table", "wfdb") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one cohort source, not {' and '.join(given)}")
        if self.population is not None and self.size is None:
            raise ValueError("size: required for a population cohort (how many virtual patients)")
        if self.lead is not None and self.wfdb is None:
            raise ValueError("lead: only a wfdb cohort has leads to choose from")
        return self

    @property
    def source(self) -> str:
        return "table" if self.table is not None else "wfdb" if self.wfdb is not None else "population"


class EcgSchedule(_Model):
    """When ECGs are taken, in hours from the first dose; the first time is the pre-dose baseline."""

    times_h: tuple[float, ...] = Field(min_length=2)

    @field_validator("times_h")
    @classmethod
    def _sorted(cls, v):
        if len(set(v)) != len(v):
            dup = sorted({t for t in v if v.count(t) > 1})
            raise ValueError(f"duplicate times {dup}")
        if list(v) != sorted(v):
            raise ValueError("times must be in increasing order (the first is the pre-dose baseline)")
        return v


class Sampling(_Model):
    samples_per_patient: int = Field(gt=0)
    sampler: str = DEFAULT_SAMPLER
    settings: dict[str, float] = Field(default_factory=dict)
    checkpoint: str | None = None  # world-model checkpoint (default: the one shipped in the package)
    fs_hz: float = Field(default=500.0, gt=0)  # the mechanistic sampler's rate (the world model has its own)

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v):
        if v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; available: {', '.join(SAMPLERS)}")
        return v


class Compute(_Model):
    address: str | None = None
    replicas: int = Field(default=1, ge=1)
    gpus_per_replica: float = Field(default=0.0, ge=0)
    cpus_per_replica: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=128, gt=0)


class Risk(_Model):
    """How risk is summarised: S(a) = μ_R(a) + aversion_lambda·σ_R(a) ranks arms; bootstrap resamples."""

    aversion_lambda: float = Field(default=1.0, ge=0)
    bootstrap: int = Field(default=1000, ge=100)


class Output(_Model):
    dir: str = "runs/trial"


class Tracking(_Model):
    uri: str | None = Field(default=None, min_length=1)
    experiment: str = Field(default="vtrial", min_length=1)


class HergBindingSpec(_Model):
    """hERG binding kinetics of the CiPA dynamic hERG model (Li et al. 2017); see ``vtrial.physiology.herg``."""

    kmax: float = Field(gt=0)
    ku_per_ms: float = Field(gt=0)
    n: float = Field(gt=0)
    halfmax: float = Field(gt=0, description="nM^n")
    vhalf_mv: float


class InlineDrug(_Model):
    ic50_nM: dict[str, float | None]
    hill: dict[str, float | None] = Field(default_factory=dict)

    @field_validator("ic50_nM", "hill")
    @classmethod
    def _channels(cls, v, info):
        unknown = sorted(set(v) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {', '.join(CHANNELS)}")
        bad = {ch: x for ch, x in v.items() if x is not None and not (x > 0 if info.field_name == "hill" else x >= 0)}
        if bad:
            rule = "> 0" if info.field_name == "hill" else ">= 0 (0 or missing: no block)"
            raise ValueError("; ".join(f"{ch} = {x!r} must be {rule}" for ch, x in bad.items()))
        return v

    @field_validator("pk")
    @classmethod
    def _pk(cls, v):
        if v is None:
            return v
        known = [f.name for f in dataclasses.fields(DrugPK) if f.name != "source"]
        unknown = sorted(set(v) - set(known))
        if unknown:
            close = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            hints = ", ".join(f"{u!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for u, c in close.items())
            raise ValueError(f"unknown PK parameters {hints}; known: {', '.join(known)}")
        missing = [k for k in ("ka_per_h", "cl_l_h", "v1_l") if k not in v]
        if missing:
            raise ValueError(f"missing PK parameters {missing}")
        return v

    mw_g_mol: float = Field(gt=0)
    fu: float = Field(ge=0, le=1)
    salt_factor: float = Field(default=1.0, gt=0, le=1)
    free_cmax_nM: float | None = Field(default=None, gt=0)
    tdp_category: int | None = None
    pk: dict[str, float] | None = None
    herg_binding: HergBindingSpec | None = None


class Protocol(_Model):
    name: str = Field(min_length=1)
    seed: int = 0
    cohort: CohortSpec
    arms: tuple[Arm, ...] = Field(min_length=1)
    drugs: dict[str, InlineDrug] = Field(default_factory=dict)
    schedule: EcgSchedule
    sampling: Sampling
    endpoints: tuple[str, ...] = ("qtcf", "dqtcf", "ddqtcf")
    compute: Compute = Compute()
    risk: Risk = Risk()
    herg_model: Literal["static", "dynamic"] = Field(
        default="static",
        description="hERG block: Hill equation (static, what the block→ECG map is calibrated "
        "with) or the paced CiPA dynamic hERG model for drugs with binding kinetics (dynamic)",
    )
    output: Output = Output()
    tracking: Tracking = Tracking()

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, v):
        bad = [e for e in v if e not in ENDPOINTS]
        if bad:
            raise ValueError(f"unknown endpoints {bad}; available: {', '.join(ENDPOINTS)}")
        return v

    def drug(self, name: str) -> Drug:
        """An inline drug of this protocol, else a built-in."""
        if name in self.drugs:
            spec = self.drugs[name].model_dump()
            if self.herg_model == "static":
                spec["herg_binding"] = None
            return Drug.from_dict({"name": name, **spec})
        return get_drug(name, self.herg_model)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    HASHED: ClassVar[tuple[str, ...]] = ("seed", "cohort", "arms", "drugs", "schedule", "sampling", "herg_model")

    @property
    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) of what determines the samples: the sections in ``HASHED``, as
        sorted JSON. Compute, output, tracking, endpoints and risk do not enter: the same trial run on
        another cluster, into another folder or analysed another way has the same hash."""
        d = self.to_dict()
        blob = json.dumps({k: d[k] for k in self.HASHED}, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes) -> Protocol:
        return self.model_copy(update=changes)


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_for(loc: tuple):
    """The pydantic model class that owns the field at ``loc`` (for key suggestions)."""
    model: Any = Protocol
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            for cc in [c, *getattr(c, "__args__", ())]:
                if isinstance(cc, type) and issubclass(cc, BaseModel):
                    nxt = cc
        model = nxt
    return model


def _problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _field_path(loc)
        if e["type"] == "extra_forbidden":
            model = _model_for(loc)
            keys = list(model.model_fields) if model else []
            close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else (f"; valid keys: {', '.join(keys)}" if keys else "")
            out.append(f"{path}: unknown key{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{path}: {msg}")
    return out


def _semantic_problems(p: Protocol) -> list[str]:
    problems = []
    names = [a.name for a in p.arms]
    for i, n in enumerate(names):
        if names.index(n) != i:
            problems.append(f"arms[{i}].name: duplicate arm name {n!r}")
    broken = {}
    for name in p.drugs:
        try:
            p.drug(name)
        except (ValueError, TypeError) as exc:  # e.g. an unknown pk key, a fraction out of range
            broken[name] = exc
            problems.append(f"drugs.{name}: {exc}")
    known = set(known_drugs()) | set(p.drugs)
    for i, arm in enumerate(p.arms):
        for j, d in enumerate(arm.drugs):
            where = f"arms[{i}].drugs[{j}]"
            if d.drug not in known:
                close = difflib.get_close_matches(d.drug, sorted(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                problems.append(f"{where}.drug: unknown drug {d.drug!r}.{hint} Known: {', '.join(sorted(known))}")
                continue
            if d.drug in broken:  # named once, under drugs
                continue
            drug = p.drug(d.drug)
            if d.dose is not None and drug.pk is None:
                problems.append(
                    f"{where}.dose: drug {d.drug!r} has no PK; give exposure (e.g. multiple_of_free_cmax) "
                    f"or define pk inline"
                )
            if d.exposure is not None and d.exposure.multiple_of_free_cmax is not None and drug.free_cmax_nM is None:
                problems.append(f"{where}.exposure: drug {d.drug!r} has no free_cmax_nM")
    unknown = unknown_settings(p.sampling.sampler, p.sampling.settings)
    if unknown:
        problems.append(
            f"sampling.settings: unknown settings {unknown}; available: "
            f"{', '.join(SAMPLER_SETTINGS[p.sampling.sampler])}"
        )
    return problems


def parse_protocol(data: dict, source: str = "<protocol>") -> Protocol:
    """Validate a protocol mapping; raise ``ProtocolError`` listing every problem."""
    if not isinstance(data, dict):
        raise ProtocolError(source, [f"<root>: expected a mapping of protocol fields, got {type(data).__name__}"])
    try:
        p = Protocol.model_validate(data)
    except ValidationError as err:
        raise ProtocolError(source, _problems(err)) from None
    except RecursionError:
        raise ProtocolError(source, ["<root>: nested too deeply to be a protocol"]) from None
    problems = _semantic_problems(p)
    if problems:
        raise ProtocolError(source, problems)
    return p


def read_protocol(path: str | Path) -> Protocol:
    """Read and validate a YAML protocol file (its content only; ``vtrial.load_protocol`` also checks the
    files it names)."""
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(
            str(path), ["<file>: protocol file not found" + (" (it is a folder)" if path.is_dir() else "")]
        )
    raw = path.read_bytes()
    if len(raw) > MAX_PROTOCOL_BYTES:
        raise ProtocolError(str(path), [f"<file>: {len(raw):,} bytes; a protocol is at most {MAX_PROTOCOL_BYTES:,}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProtocolError(
            str(path), [f"<file>: not UTF-8 text (byte {raw[exc.start]:#04x} on line {line})"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError(str(path), [f"<yaml>: malformed YAML at {where}: {problem}"]) from None
    except RecursionError:
        raise ProtocolError(str(path), ["<yaml>: nested too deeply to be a protocol"]) from None
    return parse_protocol(data, str(path))


def dump_protocol(p: Protocol) -> str:
    return yaml.safe_dump(p.to_dict(), sort_keys=False)


def expand(p: Protocol, n_patients: int) -> Iterator[tuple[int, int, int]]:
    """Work units (arm index, patient index, time index), in a fixed order, for a cohort of
    ``n_patients``; each unit gets ``sampling.samples_per_patient`` samples."""
    for a in range(len(p.arms)):
        for i in range(n_patients):
            for t in range(len(p.schedule.times_h)):
                yield a, i, t
