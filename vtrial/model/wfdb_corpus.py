"""Training pairs from a user's own WFDB records and a metadata table in the layout of the FDA study
ECGRDVQ (``SCR-002.Clinical.Data.csv``: EGREFID = record name, RANDID, EXTRT, EXDOSE, EXDOSU, TPT,
BASELINE, PCSTRESN, PCSTRESU, ...).

Each post-dose ECG is paired with the same subject's first pre-dose ECG of the same treatment period.
Beats are median beats of one lead (by name), resampled to the model's rate; the action comes from the
drug library (block at the measured free concentration); the prior beat is ECGSYN fitted to the
baseline beat (``fit_waves``) under Δ(block). A record that cannot be read or has too few beats is
skipped and listed, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
import wfdb
from scipy.signal import resample_poly

from vtrial.model.corpus import FS_HZ, N_SAMPLES, WINDOW_S, Pairs, action_vector, covariate_vector
from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import apply_block, default_coefficients
from vtrial.physiology.fit import fit_waves
from vtrial.signal.median_beat import median_beat
from vtrial.sources.study_table import load_clinical_table
from vtrial.spec.drugs import get_drug


def record_beat(path: Path, lead: str) -> tuple[np.ndarray, float]:
    """Median beat of ``lead`` at the model's rate over its window, and the RR in ms."""
    rec = wfdb.rdrecord(str(path))
    names = [n.lower() for n in rec.sig_name]
    if lead.lower() not in names:
        raise ValueError(f"lead {lead!r} not in {rec.sig_name}")
    x = rec.p_signal[:, names.index(lead.lower())]
    mb = median_beat(x, rec.fs, WINDOW_S)
    up, down = int(FS_HZ), int(rec.fs)
    g = np.gcd(up, down)
    beat = resample_poly(mb.beat_mv, up // g, down // g)[:N_SAMPLES]
    if len(beat) < N_SAMPLES:
        raise ValueError(f"window too short after resampling ({len(beat)} < {N_SAMPLES} samples)")
    return beat, mb.rr_ms


def pairs_from_wfdb(metadata: str | Path, records_dir: str | Path, lead: str = "ii") -> tuple[Pairs, list[str]]:
    """Pairs (baseline, post-dose) from the records named in the metadata table; and the skipped records
    with their reasons."""
    table, _ = load_clinical_table(metadata)
    if table["record"].is_null().all():
        raise ValueError(f"{metadata}: no EGREFID column naming each ECG's record")
    records_dir = Path(records_dir)
    beats, skipped = {}, []
    for rec in table["record"].unique().to_list():
        try:
            beats[rec] = record_beat(records_dir / rec, lead)
        except Exception as exc:  # any unreadable record is reported, the others still load
            skipped.append(f"{rec}: {type(exc).__name__}: {exc}")
    rows = table.filter(pl.col("record").is_in(list(beats)))
    base = (
        rows.filter(pl.col("baseline"))
        .sort("time_h")
        .group_by("subject", "treatment", maintain_order=True)
        .agg(pl.col("record").first().alias("base_record"))
    )
    post = rows.filter(~pl.col("baseline")).join(base, on=["subject", "treatment"])
    if post.height == 0:
        raise ValueError(f"{metadata}: no post-dose ECG with a readable pre-dose ECG of the same subject and period")
    base_beats = np.stack([beats[r][0] for r in post["base_record"]])
    target = np.stack([beats[r][0] for r in post["record"]])
    rr_ms = np.array([beats[r][1] for r in post["base_record"]])
    waves, _ = fit_waves(base_beats, FS_HZ, rr_ms / 1000.0, WINDOW_S)
    block = np.zeros((post.height, len(CHANNELS)))
    conc = np.zeros(post.height)
    for i, r in enumerate(post.iter_rows(named=True)):
        if r["treatment"] == "placebo" or r["conc_ng_ml"] is None:
            continue
        drug = get_drug(r["treatment"])
        conc[i] = r["conc_ng_ml"] / drug.mw_g_mol * 1000.0 * drug.fu  # ng/mL → nM, free
        block[i] = drug.block(conc[i])
    prior = ecgsyn_beat(apply_block(waves, block, default_coefficients()).to_ecgsyn(), FS_HZ, WINDOW_S).numpy()
    # a real subject's drug sensitivity is unknown: its median, 1 (the model then carries the spread)
    cov = covariate_vector(
        (post["sex"] == "F").cast(pl.Float64).to_numpy(),
        post["age_y"].to_numpy(),
        post["weight_kg"].to_numpy(),
        rr_ms / 1000.0,
        np.ones(post.height),
    )
    action = action_vector(block, conc, post["time_h"].to_numpy(), post["dose_mg"].fill_null(0.0).to_numpy())

    def f32(x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32)

    pairs = Pairs(
        f32(base_beats),
        f32(target),
        f32(prior),
        f32(action),
        f32(cov),
        f32(rr_ms),
        post["treatment"].to_list(),
        waves,
        block,
        conc,
    )
    return pairs, skipped
