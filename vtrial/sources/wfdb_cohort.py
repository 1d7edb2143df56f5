"""WFDB cohorts: one virtual patient per WFDB record in a folder (searched recursively for ``*.hea``).

For each record: read it (``wfdb.rdrecord``), check it, detect R peaks on the selected lead, build the
median beat of every lead on those R peaks (``vtrial.signal.median_beat``), and fit the patient's ECGSYN waves ψ
to the selected lead's median beat (``fit_waves``). A record that cannot be used — header unreadable,
``.dat`` missing or shorter than its header says, a signal format wfdb does not read, no lead of that
name, a flat or saturated lead, too few regular beats, an ECGSYN fit that fails — is skipped, named in
the cohort report with its reason, and the other records load; ``strict=True`` makes any such record an
error instead.

Covariates come from the header's comments where present (PTB's ``# age: 81``/``# sex: female``,
MIT-BIH's ``# 69 M ...``), else the healthy-adult population's means (listed per record in the
report). Drug sensitivity is drawn as for clinical-table cohorts (``vtrial.sources.table_cohort``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import wfdb
from scipy.signal import resample_poly

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.fit import fit_waves, waves_for_intervals
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import measure
from vtrial.signal.median_beat import detect_r_peaks, median_beat, remove_baseline
from vtrial.sources.cohort import COHORT_STREAM, Cohort, lognormal_sensitivity
from vtrial.sources.population import DEFAULT_POPULATION, builtin_population, load_population

FIT_FS_HZ = 500
WINDOW_S = (-0.4, 0.8)
BYTES_PER_SAMPLE = {
    "8": 1,
    "16": 2,
    "61": 2,
    "80": 1,
    "160": 2,
    "212": 1.5,
    "24": 3,
    "32": 4,
    "310": 4 / 3,
    "311": 4 / 3,
}
LEAD_ALIASES = {"ii": ("ii", "mlii", "lead ii", "d2")}
FLAT_PTP_MV = 0.1  # a lead whose 1st–99th percentile range is below this carries no ECG
MIN_FS_HZ, MAX_FS_HZ = 100.0, 20_000.0  # rates a resting ECG is recorded at
SATURATED_SHARE = 0.01  # share of samples pinned at the lead's extreme values


class RecordError(ValueError):
    """A record that cannot become a patient, with the reason."""


@dataclass(frozen=True)
class RecordBeats:
    name: str
    lead_names: list[str]
    beats_mv: np.ndarray  # (leads, T) median beats at FIT_FS_HZ over WINDOW_S, R at -WINDOW_S[0]
    lead: int  # index of the selected lead
    rr_ms: float
    n_beats: int
    age_y: float | None
    sex: str | None


def find_records(folder: str | Path) -> list[Path]:
    """Record paths (without suffix) of every header under ``folder``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"WFDB folder not found: {folder}")
    return sorted(p.with_suffix("") for p in folder.rglob("*.hea"))


def lead_index(names: list[str], lead: str) -> int:
    low = [n.strip().lower() for n in names]
    for alias in LEAD_ALIASES.get(lead.lower(), (lead.lower(),)):
        if alias in low:
            return low.index(alias)
    raise RecordError(f"no lead {lead!r} (leads: {', '.join(names)})")


def _header_covariates(comments: list[str]) -> tuple[float | None, str | None]:
    text = " ".join(comments)
    age = re.search(r"age:\s*(\d+(?:\.\d+)?)", text, re.I)
    sex = re.search(r"sex:\s*(male|female|m|f)\b", text, re.I)
    if age or sex:
        return (float(age.group(1)) if age else None), (sex.group(1)[0].upper() if sex else None)
    for c in comments:  # MIT-BIH: "# 69 M 1085 1629 x1"
        mit = re.match(r"\s*(\d+)\s+([MF])\b", c)
        if mit:
            return float(mit.group(1)), mit.group(2)
    return None, None


def _check_dat_files(path: Path, header) -> None:
    for i, (fname, fmt) in enumerate(zip(header.file_name, header.fmt)):
        dat = path.parent / fname
        if not dat.is_file():
            raise RecordError(f"signal file missing: {dat.name}")
        if fmt not in BYTES_PER_SAMPLE:
            raise RecordError(f"unsupported signal format {fmt!r} ({dat.name})")
        n_in_file = sum(1 for f in header.file_name if f == fname)
        expected = int(np.ceil(header.sig_len * n_in_file * BYTES_PER_SAMPLE[fmt])) + int(header.byte_offset[i] or 0)
        if dat.stat().st_size < expected:
            raise RecordError(
                f"signal file truncated: {dat.name} has {dat.stat().st_size} bytes, the header implies {expected}"
            )


def check_lead(x: np.ndarray, fs_hz: float) -> None:
    """Raise ``RecordError`` for a lead with NaNs, flat or saturated."""
    if not np.isfinite(x).all():
        raise RecordError(f"{int((~np.isfinite(x)).sum())} NaN samples in the lead")
    lo, hi = np.percentile(remove_baseline(x, fs_hz), [1, 99])
    if hi - lo < FLAT_PTP_MV:
        raise RecordError(f"flat lead: 1–99 % range {hi - lo:.3f} mV < {FLAT_PTP_MV} mV")
    pinned = float(np.mean((x >= x.max()) | (x <= x.min())))
    if pinned > SATURATED_SHARE:
        raise RecordError(f"saturated lead: {100 * pinned:.1f} % of samples at the extreme values")


def read_record(path: str | Path, lead: str = "II", max_s: float = 60.0) -> RecordBeats:
    """Median beats of every lead (on the selected lead's R peaks) from the first ``max_s`` seconds."""
    path = Path(path)
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises many types for a bad header
        raise RecordError(f"unreadable header: {type(exc).__name__}: {exc}") from None
    if getattr(header, "seg_name", None) is not None:
        raise RecordError("a multi-segment record (not read as one patient: give its segments as records)")
    if not getattr(header, "file_name", None):
        raise RecordError("header names no signals")
    if not (MIN_FS_HZ <= float(header.fs or 0) <= MAX_FS_HZ):
        raise RecordError(f"sampling rate {header.fs!r} Hz outside {MIN_FS_HZ:g}–{MAX_FS_HZ:g} Hz")
    _check_dat_files(path, header)
    li = lead_index(header.sig_name, lead)
    try:
        rec = wfdb.rdrecord(str(path), sampto=min(header.sig_len, int(max_s * header.fs)))
    except Exception as exc:
        raise RecordError(f"unreadable signal: {type(exc).__name__}: {exc}") from None
    fs = float(rec.fs)
    x = rec.p_signal[:, li]
    check_lead(x, fs)
    try:
        peaks = detect_r_peaks(x, fs)
        main = median_beat(x, fs, WINDOW_S, r_peaks=peaks, min_beats=5)
    except ValueError as exc:
        raise RecordError(f"too few beats: {exc}") from None
    up, down = FIT_FS_HZ, int(round(fs))
    g = np.gcd(up, down)
    n_out = int(round((WINDOW_S[1] - WINDOW_S[0]) * FIT_FS_HZ))
    beats = []
    for j in range(rec.p_signal.shape[1]):
        sig = rec.p_signal[:, j]
        if not np.isfinite(sig).all():
            beats.append(np.full(n_out, np.nan))
            continue
        b = median_beat(sig, fs, WINDOW_S, r_peaks=peaks, min_beats=5).beat_mv if j != li else main.beat_mv
        beats.append(resample_poly(b, up // g, down // g)[:n_out])
    age, sex = _header_covariates(rec.comments or [])
    return RecordBeats(path.name, list(rec.sig_name), np.stack(beats), li, main.rr_ms, main.n_beats, age, sex)


def fit_psi(beats_mv: np.ndarray, rr_ms: np.ndarray, tolerance_ms: float = 10.0) -> tuple[Waves, list[dict]]:
    """Each median beat's ECGSYN waves ψ, in two steps. (1) ψ whose measured PR, QRS, J-Tpeak and Tpeak-Tend
    are the median beat's (``waves_for_intervals``; R and T heights, T's sign included, from the beat):
    what the trial's intervals need. (2) A least-squares fit of the waveform from there (``fit_waves``),
    kept only if its measured QT, QRS, PR and Tpeak-Tend stay within ``tolerance_ms`` of the median beat's
    — an unconstrained fit can trade a broad S wave for the ST segment and move the T end. Per beat:
    ``method`` ("waveform", "intervals", or None with a ``reason``), the residual RMS and the intervals."""
    n = len(beats_mv)
    m = measure(beats_mv, FIT_FS_HZ, rr_ms, window_start_s=WINDOW_S[0])
    cols = ("qt_ms", "qrs_ms", "pr_ms", "jtpeak_ms", "tpte_ms")
    ok = np.all([np.isfinite(m[c]) for c in cols], axis=0)
    info: list[dict] = [
        {"method": None, "reason": f"median beat unmeasurable ({m['reason'][i] or 'an interval is missing'})"}
        if not ok[i]
        else {}
        for i in range(n)
    ]
    w = Waves.typical(n)
    if not ok.any():
        return w, info
    r_idx = int(round(-WINDOW_S[0] * FIT_FS_HZ))
    base = np.median(beats_mv, axis=1)
    h = w.height_mv.clone()
    h[:, 2] = torch.as_tensor(np.clip(np.abs(beats_mv[:, r_idx] - base), 0.1, None))
    p_seg = beats_mv[:, r_idx - int(0.30 * FIT_FS_HZ) : r_idx - int(0.06 * FIT_FS_HZ)] - base[:, None]
    p_amp = np.take_along_axis(p_seg, np.abs(p_seg).argmax(axis=1)[:, None], axis=1)[:, 0]
    h[:, 0] = torch.as_tensor(np.where(np.abs(p_amp) < 0.02, 0.02, p_amp))
    t_amp = np.where(np.isfinite(m["t_amp_mv"]), m["t_amp_mv"], 0.2)
    h[:, 4] = torch.as_tensor(np.where(np.abs(t_amp) < 0.03, np.sign(t_amp + 1e-12) * 0.03, t_amp))
    fill = {c: np.where(ok, m[c], np.nanmedian(m[c][ok])) for c in ("pr_ms", "qrs_ms", "jtpeak_ms", "tpte_ms")}
    w0, _ = waves_for_intervals(
        rr_ms,
        fill["pr_ms"],
        fill["qrs_ms"],
        fill["jtpeak_ms"],
        fill["tpte_ms"],
        iterations=12,
        base=w.replace(height_mv=h),
    )
    m0 = measure(ecgsyn_beat(w0.to_ecgsyn(), FIT_FS_HZ, WINDOW_S), FIT_FS_HZ, rr_ms, window_start_s=WINDOW_S[0])
    miss0 = np.max([np.abs(m0[c] - m[c]) for c in ("qt_ms", "qrs_ms", "pr_ms", "tpte_ms")], axis=0)
    w1, rms1 = fit_waves(beats_mv, FIT_FS_HZ, np.asarray(rr_ms) / 1000.0, WINDOW_S, init=w0, iterations=20)
    rms0 = np.sqrt(np.mean((ecgsyn_beat(w0.to_ecgsyn(), FIT_FS_HZ, WINDOW_S).numpy() - beats_mv) ** 2, axis=1))
    m1 = measure(ecgsyn_beat(w1.to_ecgsyn(), FIT_FS_HZ, WINDOW_S), FIT_FS_HZ, rr_ms, window_start_s=WINDOW_S[0])
    drift = np.max([np.abs(m1[c] - m[c]) for c in ("qt_ms", "qrs_ms", "pr_ms", "tpte_ms")], axis=0)
    use_fit = np.isfinite(drift) & (drift <= tolerance_ms) & np.isfinite(rms1)
    sel = torch.as_tensor(use_fit)[:, None]
    waves = Waves(
        torch.where(sel, w1.t_ms, w0.t_ms),
        torch.where(sel, w1.sigma_ms, w0.sigma_ms),
        torch.where(sel, w1.height_mv, w0.height_mv),
        w0.rr_s,
    )
    for i in np.flatnonzero(ok):
        if not use_fit[i] and not miss0[i] <= tolerance_ms:
            info[i] = {
                "method": None,
                "reason": f"no ECGSYN beat found with the median beat's intervals (off by "
                f"{miss0[i]:.0f} ms; T amplitude {m['t_amp_mv'][i]:.2f} mV)",
            }
            continue
        info[i] = {
            "method": "waveform" if use_fit[i] else "intervals",
            "fit_rms_mv": float(rms1[i] if use_fit[i] else rms0[i]),
            **{c: float(m[c][i]) for c in cols},
        }
    return waves, info


def _fit_each_if_needed(records: list[RecordBeats]) -> tuple[Waves, list[dict]]:
    """ψ of every record in one batched fit; when the batch fails as a whole (one record's beat can make
    it singular), record by record, so that only the record that cannot be fitted is skipped."""
    beats = np.stack([r.beats_mv[r.lead] for r in records])
    rr = np.array([r.rr_ms for r in records])
    try:
        return fit_psi(beats, rr)
    except (np.linalg.LinAlgError, RuntimeError, ValueError):
        parts, info = [], []
        for i in range(len(records)):
            try:
                w, f = fit_psi(beats[i : i + 1], rr[i : i + 1])
            except (np.linalg.LinAlgError, RuntimeError, ValueError) as exc:
                w, f = Waves.typical(1), [{"method": None, "reason": f"no ECGSYN fit: {type(exc).__name__}: {exc}"}]
            parts.append(w)
            info += f
        cat = [torch.cat([getattr(w, k) for w in parts]) for k in ("t_ms", "sigma_ms", "height_mv", "rr_s")]
        return Waves(*cat), info


def cohort_from_wfdb(
    folder: str | Path, seed: int, lead: str = "II", size: int | None = None, strict: bool = False
) -> tuple[Cohort, dict]:
    """The cohort of a folder of WFDB records (the first ``size`` usable records by name, default all) and
    its report: patients, skipped records with reasons, covariates defaulted, ECGSYN fit residuals."""
    paths = find_records(folder)
    if not paths:
        raise FileNotFoundError(f"no WFDB headers (*.hea) under {folder}")
    records, skipped = [], []
    for p in paths:
        try:
            records.append(read_record(p, lead))
        except (RecordError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # this record alone
            if strict:
                raise RecordError(f"{p}: {exc}") from None
            skipped.append({"record": str(p.relative_to(folder)), "reason": str(exc)})
    if not records:
        raise RecordError(
            f"{folder}: no usable record ({len(skipped)} skipped: "
            + "; ".join(f"{s['record']}: {s['reason']}" for s in skipped)
            + ")"
        )
    if size is not None:
        if size > len(records):
            raise ValueError(f"{folder}: cohort.size = {size} but only {len(records)} records are usable")
        records = records[:size]
    waves, fit_info = _fit_each_if_needed(records)
    bad = np.array([f["method"] is None for f in fit_info])
    if bad.any():
        msg = [f"{records[i].name}: {fit_info[i]['reason']}" for i in np.flatnonzero(bad)]
        if strict:
            raise RecordError("; ".join(msg))
        skipped += [{"record": records[i].name, "reason": fit_info[i]["reason"]} for i in np.flatnonzero(bad)]
        keep = np.flatnonzero(~bad)
        records, fit_info = [records[i] for i in keep], [fit_info[i] for i in keep]
        waves = waves.index(keep)
    pop = load_population(
        builtin_population(DEFAULT_POPULATION)
    )  # covariates a header does not give, and the sensitivity CV
    cov = pop["covariates"]
    defaulted = {
        r.name: [k for k, v in (("age_y", r.age_y), ("sex", r.sex)) if v is None] + ["weight_kg"] for r in records
    }
    sex = np.array([r.sex or ("F" if cov["female_fraction"] >= 0.5 else "M") for r in records])
    age = np.array([cov["age_y"]["mean"] if r.age_y is None else r.age_y for r in records], float)
    weight = np.full(len(records), float(cov["weight_kg"]["mean"]))
    cv = pop["sensitivity"]["drug_effect_cv"]
    sensitivity = lognormal_sensitivity(
        np.random.default_rng([seed, COHORT_STREAM, 0x3FDB]).standard_normal(len(records)), cv
    )
    cohort = Cohort(sex, age, weight, sensitivity, waves)
    report = {
        "source": "wfdb",
        "path": str(folder),
        "lead": lead,
        "patients": len(records),
        "records": [
            {
                "record": r.name,
                "leads": r.lead_names,
                "lead_used": r.lead_names[r.lead],
                "rr_ms": r.rr_ms,
                "n_beats": r.n_beats,
                **f,
                "defaulted_covariates": defaulted[r.name],
            }
            for r, f in zip(records, fit_info)
        ],
        "skipped": skipped,
        "sensitivity": f"drawn, log-normal CV {cv} (not observed in real subjects)",
    }
    return cohort, report
