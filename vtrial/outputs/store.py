"""Parquet tables of a trial and their aggregation with polars.

``samples.parquet`` is a folder of parts, one per batch of work units, each written atomically
(temporary file, then rename), so an interrupted run leaves only whole parts and ``--resume`` can skip
them. The other tables (``patients``, ``arms``, ``summary``, ``comparisons``, ``cqtc``, ``tdp``; see
``vtrial.stats.risk``) are computed from the parts lazily (the driver never holds all samples) and written
here with the protocol hash and seed. ``beats.parquet`` is a folder of parts too: the sampled beats the
replicas kept (every unit of the first patient), written with the batch's samples part, from which the
report draws its example beats.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

SAMPLES = "samples.parquet"
PATIENTS = "patients.parquet"
ARMS = "arms.parquet"
SUMMARY = "summary.parquet"
COMPARISONS = "comparisons.parquet"
CQTC = "cqtc.parquet"
TDP = "tdp.parquet"
BEATS = "beats.parquet"


def part_path(out: Path, index: int) -> Path:
    return Path(out) / SAMPLES / f"part-{index:06d}.parquet"


def done_parts(out: Path) -> set[int]:
    folder = Path(out) / SAMPLES
    if not folder.is_dir():
        return set()
    return {int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")}


def drop_bad_parts(out: Path, expected_rows: dict[int, int]) -> list[int]:
    """Before a resume: delete leftover temporaries and any part that cannot be read, has the wrong row
    count or is not a part of this plan; returns the indices of the parts deleted (they are rerun)."""
    folder = Path(out) / SAMPLES
    if not folder.is_dir():
        return []
    for tmp in [*folder.glob("part-*.tmp"), *folder.glob("part-*.sha256.tmp"), *(Path(out) / BEATS).glob("part-*.tmp")]:
        tmp.unlink()
    dropped = []
    for index in sorted(done_parts(out)):
        path = part_path(out, index)
        try:
            ok = part_intact(path) and pq.read_metadata(path).num_rows == expected_rows.get(index, -1)
        except (OSError, pa.ArrowException):
            ok = False
        if not ok:
            checksum_path(path).unlink(missing_ok=True)
            path.unlink()
            beats = beats_part_path(out, index)
            beats.unlink(missing_ok=True)
            checksum_path(beats).unlink(missing_ok=True)
            dropped.append(index)
    return dropped


def write_part(
    out: Path, index: int, rows: dict[str, np.ndarray], arm_names: list[str], protocol_hash: str, seed: int
) -> int:
    """Write one batch of sample rows; returns the row count."""
    n = len(rows["patient"])
    table = pa.table(
        {
            "arm": pa.array(np.asarray(arm_names, dtype=object)[rows["arm_idx"]].astype(str)),
            **{k: pa.array(v) for k, v in rows.items()},
            "protocol_hash": pa.array([protocol_hash] * n),
            "seed": pa.array(np.full(n, seed, dtype=np.int64)),
        }
    )
    _write_atomic(table, part_path(out, index))
    return n


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file through a temporary one and a rename: it exists whole or not at all, and its
    SHA-256 is written beside it first (``part_intact`` checks it), so a part that storage later tore or
    flipped a bit of is found and redone, not read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    check = checksum_path(path)
    check_tmp = check.with_name(check.name + ".tmp")
    check_tmp.write_text(digest + "\n")
    os.replace(check_tmp, check)
    os.replace(tmp, path)


def checksum_path(path: Path) -> Path:
    """Where a part's SHA-256 is kept: ``part-000001.sha256`` beside ``part-000001.parquet``."""
    return Path(path).with_suffix(".sha256")


def part_intact(path: Path) -> bool:
    """Whether a part's bytes are those written (its SHA-256 matches); a part without a checksum (from an
    earlier vtrial) counts as intact when its footer reads."""
    check = checksum_path(path)
    if not check.exists():
        return True
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() == check.read_text().strip()
    except OSError:
        return False


def damaged_parts(out: Path, tables: tuple[str, ...] = (SAMPLES, BEATS)) -> list[Path]:
    """The parts of a run folder's ``tables`` (samples and beats) whose bytes are not those written, or
    whose footer cannot be read."""
    bad = []
    for folder in (Path(out) / t for t in tables):
        for path in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []:
            try:
                ok = part_intact(path) and pq.read_metadata(path) is not None
            except (OSError, pa.ArrowException):
                ok = False
            if not ok:
                bad.append(path)
    return bad


def scan_samples(out: Path) -> pl.LazyFrame:
    return pl.scan_parquet(Path(out) / SAMPLES / "*.parquet")


def read_samples(out: Path) -> pl.DataFrame:
    """All samples in canonical order (arm, patient, time, sample)."""
    return scan_samples(out).collect().sort("arm_idx", "patient", "time_idx", "sample")


def beats_part_path(out: Path, index: int) -> Path:
    return Path(out) / BEATS / f"part-{index:06d}.parquet"


def write_beats_part(
    out: Path, index: int, rows: dict[str, np.ndarray], beats: np.ndarray, fs_hz: float, arm_names: list[str]
) -> Path:
    """The kept beats of one batch (one row per beat, the signal as a list) beside its samples part;
    ``rows``: the batch's unit ids per beat (arm_idx, patient, time_idx, time_h, sample). Written before
    the samples part, so a finished batch always has its beats."""
    table = pa.table(
        {
            "arm": pa.array(np.asarray(arm_names, dtype=object)[rows["arm_idx"]].astype(str)),
            **{k: pa.array(v) for k, v in rows.items()},
            "fs_hz": pa.array(np.full(len(beats), fs_hz)),
            "beat_mv": pa.array(list(np.asarray(beats, np.float32)), type=pa.list_(pa.float32())),
        }
    )
    path = beats_part_path(out, index)
    _write_atomic(table, path)
    return path


def read_beats(out: Path) -> pl.DataFrame | None:
    """Every kept beat of a run, in canonical order; None when the run kept none."""
    folder = Path(out) / BEATS
    damaged = set(damaged_parts(out, (BEATS,)))  # the beats only: the samples are not read here
    parts = [p for p in sorted(folder.glob("part-*.parquet")) if p not in damaged] if folder.is_dir() else []
    if not parts:
        return None
    return pl.read_parquet(parts).sort("arm_idx", "patient", "time_idx", "sample")


def write_table(df: pl.DataFrame, out: Path, name: str, protocol_hash: str, seed: int) -> Path:
    path = Path(out) / name
    df.with_columns(
        pl.lit(protocol_hash).alias("protocol_hash"), pl.lit(seed, dtype=pl.Int64).alias("seed")
    ).write_parquet(path)
    return path
