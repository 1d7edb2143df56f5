"""A trial, end to end: protocol → cohort → work units → replicas on Ray → Parquet parts → statistics →
tables, report and MLflow run.

This is the use case the CLI and the notebook API call; each stage lives in its own package
(``spec``, ``sources``, ``sampling``, ``engine``, ``stats``, ``outputs``). The driver builds each batch of
work units when it submits it (``vtrial.spec.work_units.UnitPlan``), the engine keeps a bounded number
of batches in flight per replica and replaces replicas that die, and each finished batch is written as
a Parquet part at once (with the sampled beats the replicas kept for the report), so the driver never
holds the whole trial. Batch boundaries depend only on the protocol, and every unit draws from its own
seed, so the tables are identical whatever the number of replicas, their failures, or a ``--resume``
after the driver itself died. Ray starts locally (on 127.0.0.1) when no address is given.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from vtrial.outputs import store
from vtrial.outputs.report import write_report
from vtrial.outputs.run_folder import (
    LOCK,
    RESOLVED,
    RUN_INFO,
    RunFolderError,
    RunLock,
    check_output,
    read_resolved,
    record_output,
    stage,
    write_run_info,
)
from vtrial.outputs.run_location import RunLocation
from vtrial.outputs.tracking import TrackingError, check_tracking, log_run
from vtrial.sampling.registry import sampling_problems
from vtrial.sources.locate import cohort_problems, load_cohort
from vtrial.spec.protocol import Protocol, ProtocolError, read_protocol
from vtrial.spec.work_units import UnitPlan, batch_slices
from vtrial.stats.analysis import Analysis, analyse

EXAMPLE_PATIENT = 0  # the patient whose sampled beats the replicas keep for the report


class RunError(RuntimeError):
    """A trial that cannot start or finish, with the reason."""


def load_protocol(path: str | Path, data_dir: Path | None = None) -> Protocol:
    """Read a protocol file and check everything it names: its fields, its cohort's files (relative to
    the protocol's folder, ``data_dir``, or the working directory) and its checkpoint. Raises
    ``ProtocolError`` listing every problem."""
    return check_protocol(read_protocol(path), str(path), Path(path).parent, data_dir)


def check_protocol(
    protocol: Protocol, source: str = "<protocol>", base_dir: Path | None = None, data_dir: Path | None = None
) -> Protocol:
    """The protocol, once the files it names are found (cohort data, checkpoint); else ``ProtocolError``
    listing each one that is missing or unusable."""
    problems = cohort_problems(protocol.cohort, base_dir, data_dir) + sampling_problems(protocol, base_dir)
    if problems:
        raise ProtocolError(source, problems)
    return protocol


@dataclass
class TrialResult:
    out: Path
    protocol: Protocol
    patients: pl.DataFrame
    arms: pl.DataFrame
    summary: pl.DataFrame
    run_id: str | None = None
    timings_s: dict = field(default_factory=dict)
    analysis: Analysis | None = None
    location: str | None = None  # where run_trial keeps the run folder: ``out``, or the URI it mirrors

    def samples(self) -> pl.DataFrame:
        return store.read_samples(self.out)


# driver memory per patient: the cohort (baseline waves, covariates) and its draws; four arms' cached
# exposures (free concentration and 7 block fractions per time); the per-patient tables of the analysis
COHORT_BYTES_PER_PATIENT = 300
EXPOSURE_BYTES_PER_PATIENT_TIME = 4 * 8 * 8
TABLE_BYTES_PER_PATIENT_ARM_TIME = 240
MEMORY_SHARE = 0.8  # of the memory available now that a trial may plan to use


def driver_memory_bytes(protocol: Protocol, n_patients: int) -> int:
    """An upper estimate of the driver's memory for a trial of ``n_patients`` (samples are streamed to
    Parquet parts and never held, so they do not count)."""
    n_t, n_a = len(protocol.schedule.times_h), len(protocol.arms)
    per_patient = COHORT_BYTES_PER_PATIENT + EXPOSURE_BYTES_PER_PATIENT_TIME * n_t
    per_patient += TABLE_BYTES_PER_PATIENT_ARM_TIME * n_a * n_t
    return int(n_patients * per_patient)


def check_memory(protocol: Protocol, available_bytes: float | None = None) -> None:
    """Refuse, before anything is built, a synthetic cohort whose trial cannot fit in this machine's memory."""
    size = protocol.cohort.size
    if protocol.cohort.population is None or size is None:
        return  # a table or a folder is as large as its data
    if available_bytes is None:
        available_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    need = driver_memory_bytes(protocol, size)
    if need > MEMORY_SHARE * available_bytes:
        fits = int(MEMORY_SHARE * available_bytes // max(1, need // size))
        raise RunError(
            f"cohort.size = {size:,} needs about {need / 2**30:,.1f} GiB on the driver ({len(protocol.arms)} arms, "
            f"{len(protocol.schedule.times_h)} times); {available_bytes / 2**30:,.1f} GiB are available here. "
            f"Lower cohort.size (about {fits:,} fit) or split the trial into several. Nothing was run."
        )


def resolve_cohort(
    protocol: Protocol, base_dir: Path | None = None, strict: bool = False, data_dir: Path | None = None
):
    """Load the protocol's cohort: (cohort, cohort report)."""
    problems = cohort_problems(protocol.cohort, base_dir, data_dir)
    if problems:
        raise RunError("; ".join(problems))
    try:
        return load_cohort(protocol.cohort, protocol.seed, base_dir, strict, data_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise RunError(f"cohort: {exc}") from None


def build_units(protocol: Protocol, base_dir: Path | None = None, cohort=None) -> dict[str, np.ndarray]:
    """All work units of a trial at once (small trials, tests); ``cohort``: the protocol's cohort when
    already loaded (a table or WFDB cohort costs seconds to load and fit). Runs use ``UnitPlan``."""
    if cohort is None:
        cohort, _ = resolve_cohort(protocol, base_dir)
    return UnitPlan(protocol, cohort).all()


def keep_beats(units: dict[str, np.ndarray]) -> np.ndarray | None:
    """The units whose sampled beats the replicas send back: every unit of ``EXAMPLE_PATIENT``."""
    keep = np.asarray(units["patient"]) == EXAMPLE_PATIENT
    return keep if keep.any() else None


def _kept_rows(units: dict[str, np.ndarray], keep: np.ndarray, s: int) -> dict[str, np.ndarray]:
    """The unit ids of each kept beat, in the order ``sample_keeping`` returns the beats."""
    rows = {k: np.repeat(units[k][keep], s) for k in ("arm_idx", "patient", "time_idx", "time_h")}
    rows["sample"] = np.tile(np.arange(s, dtype=np.int32), int(keep.sum()))
    return rows


def run_trial(
    protocol: Protocol,
    out: str | Path | None = None,
    address: str | None = None,
    seed: int | None = None,
    resume: bool = False,
    replicas: int | None = None,
    progress: bool = True,
    track: bool = True,
    base_dir: Path | None = None,
    strict: bool = False,
    tracking_uri: str | None = None,
    data_dir: Path | None = None,
) -> TrialResult:
    """Run a trial end to end; returns its tables as polars DataFrames. ``strict``: a WFDB record that
    cannot be used stops the run instead of being skipped (and listed in ``cohort_report.json``);
    ``tracking_uri``: the MLflow store when the protocol's ``tracking.uri`` is unset; ``data_dir``: where
    relative cohort data paths are also looked up."""
    if seed is not None:
        protocol = protocol.replace(seed=seed)
    address = address or protocol.compute.address
    replicas = replicas or protocol.compute.replicas
    try:
        loc = RunLocation(out or protocol.output.dir)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    out = loc.local  # where this process reads and writes; mirrored to ``loc.uri`` when the run lives on one
    check_memory(protocol)  # a cohort of 10⁹ is refused here, not after allocating 7 GiB
    problems = sampling_problems(protocol, base_dir)  # a bad checkpoint is refused here, not in every actor
    if problems:
        raise RunError("; ".join(problems))
    if track:
        try:
            check_tracking(protocol.tracking.uri or tracking_uri)  # before the sampling, not after it
        except TrackingError as exc:
            raise RunError(f"{exc}. Nothing was run.") from None
    timings = {}
    t0 = time.perf_counter()
    cohort, cohort_report = resolve_cohort(protocol, base_dir, strict, data_dir)
    timings["cohort_s"] = time.perf_counter() - t0
    lock = RunLock(out, shown=str(loc))
    try:
        if loc.remote:
            stage(loc, resume)
        lock.acquire()  # one live run per folder; a dead run's lock is taken over
        check_output(out, protocol, resume, shown=str(loc))
    except RunFolderError as exc:
        lock.release()
        raise RunError(str(exc)) from None
    try:
        return _run_locked(
            protocol,
            loc,
            cohort,
            cohort_report,
            timings,
            address,
            replicas,
            resume,
            progress,
            track,
            base_dir,
            tracking_uri,
            lock,
        )
    finally:
        lock.release()


def _run_locked(
    protocol,
    loc,
    cohort,
    cohort_report,
    timings,
    address,
    replicas,
    resume,
    progress,
    track,
    base_dir,
    tracking_uri,
    lock,
) -> TrialResult:
    """The run once its folder is held: plan, sample on the replicas, write, finish."""
    # Ray takes seconds to import: only a run needs it (validate, report and the API's tables do not)
    from vtrial.engine import cluster
    from vtrial.engine.dispatch import DispatchError
    from vtrial.engine.pool import ReplicaPool

    out = loc.local
    t0 = time.perf_counter()
    plan = UnitPlan(protocol, cohort)
    slices = batch_slices(len(plan), protocol.compute.batch_size)
    s = protocol.sampling.samples_per_patient
    dropped = store.drop_bad_parts(out, {i: (sl.stop - sl.start) * s for i, sl in enumerate(slices)}) if resume else []
    for i in dropped:
        loc.delete_remote(store.part_path(out, i).relative_to(out).as_posix())
    done = store.done_parts(out)
    todo = [i for i in range(len(slices)) if i not in done]
    timings["plan_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    try:
        started = cluster.connect(address)
    except cluster.ClusterError as exc:
        raise RunError(str(exc)) from None
    timings["ray_start_s"] = time.perf_counter() - t0
    workers: dict[int, dict] = {}  # pid → where it ran and how many batches
    events: list[str] = [f"resume: part {i} was unreadable, damaged or incomplete and is rerun" for i in dropped]
    if lock.stale is not None:
        events.insert(0, f"took over the lock of a run that is gone (pid {lock.stale.get('pid')})")
    compute_s = 0.0
    arm_names = [a.name for a in protocol.arms]
    try:
        cluster.check_resources(protocol.compute, replicas)
        for path in record_output(out, protocol, cohort_report):  # only once the run can start
            loc.push(path)  # a resume from the URI needs the recorded protocol
        pool = ReplicaPool(protocol, replicas, base_dir)
        t0 = time.perf_counter()
        placement = pool.placement()
        timings["replicas_ready_s"] = time.perf_counter() - t0
        total = sum(slices[i].stop - slices[i].start for i in todo) * s
        t0 = time.perf_counter()
        kept_units: dict[int, dict] = {}

        def units_of(index: int) -> dict[str, np.ndarray]:
            units = plan.batch(slices[index])
            keep = keep_beats(units)
            if keep is not None:
                kept_units[index] = _kept_rows(units, keep, s)
            return units

        with _progress(progress, total, protocol.name) as advance:
            results = pool.run(
                todo, units_of, keep_beats, on_replace=lambda exc: events.append(f"replica lost and replaced: {exc}")
            )
            for index, rows, beats, where in results:
                if beats is not None:  # before the samples part: a finished batch has its beats
                    path = store.write_beats_part(out, index, kept_units.pop(index), beats, where["fs_hz"], arm_names)
                    loc.push_soon(store.checksum_path(path))
                    loc.push_soon(path)
                n = store.write_part(out, index, rows, arm_names, protocol.content_hash, protocol.seed)
                loc.push_soon(store.checksum_path(store.part_path(out, index)))  # the checksum first, then the part
                loc.push_soon(store.part_path(out, index))  # to shared storage as soon as it exists
                w = workers.setdefault(
                    where["pid"], {k: v for k, v in where.items() if k != "compute_s"} | {"batches": 0}
                )
                w["batches"] += 1
                w["units_per_call"] = where["units_per_call"]
                compute_s += where["compute_s"]
                advance(n)
        loc.flush()
        timings["sampling_s"] = time.perf_counter() - t0
        timings["replica_compute_s"] = compute_s
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    except cluster.ClusterError as exc:
        raise RunError(str(exc)) from None
    except DispatchError as exc:
        raise RunError(f"{exc}. Finished batches are kept: --resume runs only the rest.") from None
    except OSError as exc:  # a full disk, or shared storage that refused an upload
        raise RunError(
            f"writing the run folder {loc}: {exc}. Finished batches are kept: --resume runs only the rest."
        ) from None
    finally:
        if started:
            cluster.shutdown()

    by_node: dict[str, int] = {}
    for w in workers.values():
        by_node[w["node_id"]] = by_node.get(w["node_id"], 0) + w["batches"]
    result = finish_run(
        out,
        protocol,
        track=track,
        extra_info={
            "location": str(loc),
            "replicas": replicas,
            "address": address,
            "batches": len(slices),
            "batches_run": len(todo),
            "driver_peak_rss_mb_sampling": round(rss_mb, 1),
            "batches_by_node": by_node,
            "placement": placement,
            "workers": list(workers.values()),
            "events": events,
            "cohort": {k: v for k, v in cohort_report.items() if k != "records"},
        },
        timings=timings,
        warnings=cohort_warnings(cohort_report) + events,
        tracking_uri=tracking_uri,
    )
    loc.push_all(skip_folder=store.SAMPLES, skip_names=(LOCK,))
    result.location = str(loc)
    return result


def cohort_warnings(report: dict) -> list[str]:
    """One line per subject or record the cohort skipped, with its reason."""
    return [f"cohort: skipped {s.get('record', s.get('subject'))}: {s['reason']}" for s in report.get("skipped", [])]


def write_tables(out: Path, protocol: Protocol, an: Analysis) -> list[Path]:
    """The derived tables of an analysis, each with the protocol hash and seed."""
    h, s = protocol.content_hash, protocol.seed
    tables = [
        (an.patients, store.PATIENTS),
        (an.arms, store.ARMS),
        (an.summary, store.SUMMARY),
        (an.comparisons, store.COMPARISONS),
        (an.cqtc, store.CQTC),
    ]
    if an.tdp is not None:
        tables.append((an.tdp, store.TDP))
    return [store.write_table(df, out, name, h, s) for df, name in tables]


def analyse_run(out: Path) -> tuple[Protocol, Analysis, list[Path]]:
    """Recompute a finished run's tables and report from its samples (``vtrial report``): no sampling."""
    samples = store.damaged_parts(out, (store.SAMPLES,))
    if samples:
        names = ", ".join(p.name for p in samples[:5]) + (f" and {len(samples) - 5} more" if len(samples) > 5 else "")
        raise RunError(
            f"{out}: {len(samples)} samples part(s) are damaged ({names}: their bytes are not those "
            f"written); `vtrial run PROTOCOL --out {out} --resume` redoes them"
        )
    try:
        p = read_resolved(out)
    except RunFolderError as exc:
        raise RunError(str(exc)) from None
    an = analyse(p, store.scan_samples(out))
    return p, an, write_tables(out, p, an) + write_report(out, p, an)


def finish_run(
    out: Path,
    protocol: Protocol,
    track: bool = True,
    extra_info: dict | None = None,
    timings: dict | None = None,
    warnings: list[str] | None = None,
    tracking_uri: str | None = None,
) -> TrialResult:
    """Tables, report and MLflow run of a run folder whose samples are complete; ``warnings`` (e.g.
    skipped cohort records) join the analysis's; ``tracking_uri``: the MLflow store when the protocol
    names none (default: a file in the folder)."""
    timings = dict(timings or {})
    t0 = time.perf_counter()
    an = analyse(protocol, store.scan_samples(out))
    an.warnings[:0] = list(warnings or [])
    paths = write_tables(out, protocol, an) + write_report(out, protocol, an)
    timings["aggregate_s"] = time.perf_counter() - t0
    info = {
        "protocol_hash": protocol.content_hash,
        "seed": protocol.seed,
        **(extra_info or {}),
        "timings_s": timings,
        "warnings": an.warnings,
    }
    write_run_info(out, info, timings)
    run_id = None
    if track:
        metrics = dict(an.metrics)
        reasons = store.scan_samples(out).group_by("reason").len().collect()
        for r in reasons.iter_rows(named=True):
            metrics[f"samples_reason.{r['reason'] or 'ok'}"] = r["len"]
        artifacts = paths + [out / RESOLVED, out / store.SAMPLES, out / store.BEATS, out / RUN_INFO]
        try:
            run_id = log_run(
                out, protocol, metrics, artifacts, protocol.tracking.uri or tracking_uri, protocol.tracking.experiment
            )
        except TrackingError as exc:
            raise RunError(
                f"{exc}. The tables and report are written in {out}; --resume logs the MLflow run (nothing is resampled)"
            ) from None
    return TrialResult(out, protocol, an.patients, an.arms, an.summary, run_id=run_id, timings_s=timings, analysis=an)


class _progress:
    """A rich progress bar over samples (or nothing)."""

    def __init__(self, enabled: bool, total: int, name: str):
        self.enabled, self.total, self.name = enabled, total, name

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} samples"),
            TimeRemainingColumn(),
        )
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False
