"""The trial engine: protocol → work units → Ray actors holding sampler replicas → Parquet parts → tables.

Each Ray actor (``vtrial.replica``) holds one sampler replica on ``gpus_per_replica`` GPUs (CPU when 0),
loaded once; the driver builds each batch of work units when it submits it (``vtrial.units.UnitPlan``),
keeps a bounded number of batches in flight per replica (``vtrial.dispatch``), replaces replicas that
die, and writes each finished batch as a Parquet part at once, so the driver never holds the whole
trial. Batch boundaries depend only on the protocol, and every unit draws from its own seed, so the
tables are identical whatever the number of replicas, their failures, or a ``--resume`` after the
driver itself died. Ray starts locally (on 127.0.0.1) when no address is given.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from vtrial import store
from vtrial.location import RunLocation
from vtrial.cohort import load_cohort
from vtrial.protocol import Protocol, dump_protocol
from vtrial.units import UnitPlan, batch_slices

RESOLVED = "protocol.resolved.yaml"
RUN_INFO = "run_info.json"
COHORT_REPORT = "cohort_report.json"


class RunError(RuntimeError):
    """A trial that cannot start or finish, with the reason."""


# --- work units ---------------------------------------------------------------------------------------

def resolve_cohort(protocol: Protocol, base_dir: Path | None = None, strict: bool = False):
    """Load the protocol's cohort: (protocol with ``cohort.size`` filled in, cohort, cohort report)."""
    try:
        cohort, report = load_cohort(protocol.cohort, protocol.seed, base_dir, strict)
    except (ValueError, FileNotFoundError) as exc:
        raise RunError(f"cohort: {exc}") from None
    if protocol.cohort.size is None:
        protocol = protocol.replace(cohort=protocol.cohort.model_copy(update={"size": cohort.size}))
    return protocol, cohort, report


def build_units(protocol: Protocol, base_dir: Path | None = None, cohort=None) -> dict[str, np.ndarray]:
    """All work units of a trial at once (small trials, tests); ``cohort``: the protocol's cohort when
    already loaded (a table or WFDB cohort costs seconds to load and fit). Runs use ``UnitPlan``."""
    if cohort is None:
        _, cohort, _ = resolve_cohort(protocol, base_dir)
    return UnitPlan(protocol, cohort).all()


def checkpoint_path(protocol: Protocol, base_dir: Path | None = None) -> Path:
    """The world-model checkpoint a protocol names (relative to the protocol's folder), or the shipped one."""
    from vtrial.model.worldmodel import DEFAULT_CHECKPOINT

    s = protocol.sampling
    if s.checkpoint is None:
        return DEFAULT_CHECKPOINT
    ckpt = Path(s.checkpoint)
    if not ckpt.is_absolute() and base_dir is not None and (base_dir / ckpt).exists():
        ckpt = base_dir / ckpt
    return ckpt.resolve()


def make_sampler(protocol: Protocol, device: str = "cpu", base_dir: Path | None = None):
    """The protocol's sampler: ``mechanistic`` or ``worldmodel`` (loads its checkpoint once)."""
    s = protocol.sampling
    if s.sampler == "worldmodel":
        from vtrial.model.worldmodel import WorldModelSampler

        return WorldModelSampler(s.samples_per_patient, checkpoint_path(protocol, base_dir), s.settings, device=device)
    from vtrial.sampler import MechanisticSampler

    return MechanisticSampler(s.samples_per_patient, s.fs_hz, s.settings, device=device)


# --- Ray ------------------------------------------------------------------------------------------------

def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RunError(f"compute.address = {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RunError(f"cannot reach the Ray cluster at {address}: {exc}") from None


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def start_local_ray(**init_kwargs) -> None:
    """Start Ray on this machine with every server bound to 127.0.0.1.

    On Linux Ray replaces a loopback ``node_ip_address`` with the machine's routable address unless its
    cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when Ray is imported), so it is
    turned off here for this process and the Ray processes it starts, and restored afterwards: a later
    connection to a real cluster from this process must see its routable address again.
    """
    import ray
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", _node_ip_address="127.0.0.1",
                 **init_kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` (else ``RAY_ADDRESS``, as set for a Ray job's driver) or start Ray locally
    on loopback; True if this call started it."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        return True
    start_local_ray(num_cpus=num_cpus or os.cpu_count())
    return True


def check_resources(protocol: Protocol, replicas: int) -> None:
    import ray

    c = protocol.compute
    res = ray.cluster_resources()
    gpus, cpus = res.get("GPU", 0.0), res.get("CPU", 0.0)
    if c.gpus_per_replica > 0 and gpus < c.gpus_per_replica:
        raise RunError(f"compute.gpus_per_replica = {c.gpus_per_replica} but the Ray cluster has {gpus:g} GPUs; "
                       f"set gpus_per_replica: 0 to run on CPU")
    if c.gpus_per_replica > 0 and gpus < c.gpus_per_replica * replicas:
        raise RunError(f"compute.replicas = {replicas} × gpus_per_replica = {c.gpus_per_replica} needs "
                       f"{c.gpus_per_replica * replicas:g} GPUs; the cluster has {gpus:g}")
    if cpus < c.cpus_per_replica * replicas:
        raise RunError(f"compute.replicas = {replicas} × cpus_per_replica = {c.cpus_per_replica} needs "
                       f"{c.cpus_per_replica * replicas:g} CPUs; the cluster has {cpus:g}")


# --- output folder --------------------------------------------------------------------------------------

def check_output(out: Path, protocol: Protocol, resume: bool, shown: str | None = None) -> None:
    """Refuse a folder holding another trial, or this one without --resume; writes nothing. ``shown``:
    the folder's name in messages (a URI whose staging folder ``out`` is)."""
    shown = shown or str(out)
    resolved = out / RESOLVED
    if resolved.exists():
        import yaml

        held = Protocol.model_validate(yaml.safe_load(resolved.read_text()))
        if held.content_hash != protocol.content_hash:
            raise RunError(f"{shown} already holds a different trial (protocol hash {held.content_hash}, "
                           f"this one {protocol.content_hash}); choose another --out. Nothing was overwritten.")
        if not resume:
            raise RunError(f"{shown} already holds this trial (hash {protocol.content_hash}); use --resume to "
                           f"finish it, or choose another --out. Nothing was overwritten.")
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{shown} is not empty and holds no vtrial run ({RESOLVED} missing); choose another --out. "
                       f"Nothing was overwritten.")


def stage(loc: RunLocation, resume: bool) -> None:
    """A run on a URI: a fresh staging folder holding what check_output needs (the recorded protocol; on
    --resume, everything the URI holds)."""
    import shutil

    if loc.local.exists():
        shutil.rmtree(loc.local)
    loc.local.mkdir(parents=True)
    try:
        if resume:
            loc.pull()
        else:
            loc.pull(only=(RESOLVED,))
            if not (loc.local / RESOLVED).exists() and loc.holds_files():
                raise RunError(f"{loc} is not empty and holds no vtrial run ({RESOLVED} missing); choose another "
                               f"--out. Nothing was overwritten.")
    except (OSError, ValueError) as exc:
        raise RunError(f"output folder {loc}: {exc}") from None
    if not any(loc.local.iterdir()):
        loc.local.rmdir()  # check_output and record_output treat an absent folder as a fresh one


def record_output(out: Path, protocol: Protocol) -> None:
    """Create the folder and record the resolved protocol (what --resume and refusals compare against)."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RESOLVED).exists():
        (out / RESOLVED).write_text(dump_protocol(protocol))


# --- the run --------------------------------------------------------------------------------------------

@dataclass
class TrialResult:
    out: Path
    protocol: Protocol
    patients: pl.DataFrame
    arms: pl.DataFrame
    summary: pl.DataFrame
    run_id: str | None = None
    timings_s: dict = field(default_factory=dict)
    analysis: object | None = None  # vtrial.analysis.Analysis
    location: str | None = None  # where run_trial keeps the run folder: ``out``, or the URI it mirrors

    def samples(self) -> pl.DataFrame:
        return store.read_samples(self.out)


def run_trial(protocol: Protocol, out: str | Path | None = None, address: str | None = None,
              seed: int | None = None, resume: bool = False, replicas: int | None = None,
              progress: bool = True, track: bool = True, base_dir: Path | None = None,
              strict: bool = False, tracking_uri: str | None = None) -> TrialResult:
    """Run a trial end to end; returns its tables as polars DataFrames. ``strict``: a WFDB record that
    cannot be used stops the run instead of being skipped (and listed in ``cohort_report.json``);
    ``tracking_uri``: the MLflow store when the protocol's ``tracking.uri`` is unset."""
    import ray

    from vtrial.dispatch import DispatchError, run_batches
    from vtrial.replica import replica_class

    if seed is not None:
        protocol = protocol.replace(seed=seed)
    address = address or protocol.compute.address
    replicas = replicas or protocol.compute.replicas
    try:
        loc = RunLocation(out or protocol.output.dir)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    out = loc.local  # where this process reads and writes; mirrored to ``loc.uri`` when the run lives on one
    timings = {}
    t0 = time.perf_counter()
    protocol, cohort, cohort_report = resolve_cohort(protocol, base_dir, strict)
    timings["cohort_s"] = time.perf_counter() - t0
    if loc.remote:
        stage(loc, resume)
    check_output(out, protocol, resume, shown=str(loc))

    if protocol.sampling.sampler == "worldmodel":  # a bad checkpoint is refused here, not in every actor
        from vtrial.model.worldmodel import CheckpointError, load_checkpoint

        try:
            load_checkpoint(checkpoint_path(protocol, base_dir))
        except CheckpointError as exc:
            raise RunError(f"sampling.checkpoint: {exc}") from None

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
    started = connect(address)
    timings["ray_start_s"] = time.perf_counter() - t0
    workers: dict[int, dict] = {}  # pid → where it ran and how many batches
    events: list[str] = [f"resume: part {i} was unreadable or incomplete and is rerun" for i in dropped]
    compute_s = 0.0
    try:
        check_resources(protocol, replicas)
        record_output(out, protocol)  # only once the run can start: a refused run leaves no trace
        (out / COHORT_REPORT).write_text(json.dumps(cohort_report, indent=1, default=str))
        for name in (RESOLVED, COHORT_REPORT):  # a resume from the URI needs the recorded protocol
            loc.push(out / name)
        c = protocol.compute
        cls = replica_class()
        args = (protocol.to_dict(), max(1, int(c.cpus_per_replica)), str(base_dir) if base_dir else None, c.gpus_per_replica)

        def new_replica():
            return cls.options(num_cpus=c.cpus_per_replica, num_gpus=c.gpus_per_replica, max_restarts=3,
                               max_task_retries=3).remote(*args)

        pool = [new_replica() for _ in range(replicas)]
        t0 = time.perf_counter()
        placement = ray.get([a.where.remote() for a in pool])
        timings["replicas_ready_s"] = time.perf_counter() - t0
        arm_names = [a.name for a in protocol.arms]
        total = sum(slices[i].stop - slices[i].start for i in todo) * s
        t0 = time.perf_counter()
        with _progress(progress, total, protocol.name) as advance:
            results = run_batches(pool, new_replica, todo,
                                  lambda actor, i: actor.run.remote(i, plan.batch(slices[i]), protocol.seed),
                                  on_replace=lambda exc: events.append(f"replica lost and replaced: {exc}"))
            for index, rows, where in results:
                n = store.write_part(out, index, rows, arm_names, protocol.content_hash, protocol.seed)
                loc.push_soon(store.part_path(out, index))  # to shared storage as soon as it exists
                w = workers.setdefault(where["pid"], {k: v for k, v in where.items() if k != "compute_s"} | {"batches": 0})
                w["batches"] += 1
                w["units_per_call"] = where["units_per_call"]
                compute_s += where["compute_s"]
                advance(n)
        loc.flush()
        timings["sampling_s"] = time.perf_counter() - t0
        timings["replica_compute_s"] = compute_s
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    except DispatchError as exc:
        raise RunError(f"{exc}. Finished batches are kept: --resume runs only the rest.") from None
    except OSError as exc:  # a full disk, or shared storage that refused an upload
        raise RunError(f"writing the run folder {loc}: {exc}. Finished batches are kept: --resume runs only "
                       f"the rest.") from None
    finally:
        if started:
            ray.shutdown()

    by_node: dict[str, int] = {}
    for w in workers.values():
        by_node[w["node_id"]] = by_node.get(w["node_id"], 0) + w["batches"]
    result = finish_run(out, protocol, base_dir, track=track, extra_info={
        "location": str(loc), "replicas": replicas, "address": address, "batches": len(slices), "batches_run": len(todo),
        "driver_peak_rss_mb_sampling": round(rss_mb, 1), "batches_by_node": by_node, "placement": placement, "workers": list(workers.values()), "events": events,
        "cohort": {k: v for k, v in cohort_report.items() if k != "records"}},
        timings=timings, warnings=cohort_warnings(cohort_report) + events, units=plan.patient(0), tracking_uri=tracking_uri)
    loc.push_all(skip_folder=store.SAMPLES)
    result.location = str(loc)
    return result


def cohort_warnings(report: dict) -> list[str]:
    """One line per subject or record the cohort skipped, with its reason."""
    return [f"cohort: skipped {s.get('record', s.get('subject'))}: {s['reason']}" for s in report.get("skipped", [])]


def example_units(units: dict[str, np.ndarray], summary: pl.DataFrame, patient: int = 0) -> dict[str, np.ndarray]:
    """The work units of one patient at baseline and at each arm's peak time (placebo: the peak time of
    the arm with the largest risk, else the last time), for the report's beats."""
    peaks = {r["arm_idx"]: r["peak_time_h"] for r in summary.iter_rows(named=True) if r["peak_time_h"] is not None}
    times = np.unique(units["time_h"])
    worst = summary.filter(pl.col("score_ms").is_not_null()).sort("score_ms", descending=True)
    fallback = worst["peak_time_h"][0] if worst.height else float(times[-1])
    keep = np.zeros(len(units["patient"]), bool)
    for a in np.unique(units["arm_idx"]):
        t_peak = peaks.get(int(a), fallback)
        keep |= (units["arm_idx"] == a) & (units["patient"] == patient) & (
            (units["time_idx"] == 0) | np.isclose(units["time_h"], t_peak))
    return {k: v[keep] for k, v in units.items()}


def write_example_beats(out: Path, protocol: Protocol, summary: pl.DataFrame, base_dir: Path | None,
                        units: dict[str, np.ndarray] | None = None) -> Path:
    """Re-sample the example units with the run's sampler and seed: per-unit randomness makes these the
    very samples in the tables. ``units``: the run's work units of patient 0 (or all), when the caller has them."""
    units = example_units(units if units is not None else build_units(protocol, base_dir), summary)
    sampler = make_sampler(protocol, "cpu", base_dir)
    beats, _ = sampler.beats(units, protocol.seed)
    s = protocol.sampling.samples_per_patient
    arm_names = np.asarray([a.name for a in protocol.arms], dtype=object)
    rows = {"arm": arm_names[np.repeat(units["arm_idx"], s)].astype(str),
            **{k: np.repeat(units[k], s) for k in ("arm_idx", "patient", "time_idx", "time_h")},
            "sample": np.tile(np.arange(s, dtype=np.int32), len(units["patient"]))}
    return store.write_beats(out, rows, beats.cpu().numpy(), sampler.fs_hz)


def write_tables(out: Path, protocol: Protocol, an) -> list[Path]:
    """The derived tables of an analysis, each with the protocol hash and seed."""
    h, s = protocol.content_hash, protocol.seed
    tables = [(an.patients, store.PATIENTS), (an.arms, store.ARMS), (an.summary, store.SUMMARY),
              (an.comparisons, store.COMPARISONS), (an.cqtc, store.CQTC)]
    if an.tdp is not None:
        tables.append((an.tdp, store.TDP))
    return [store.write_table(df, out, name, h, s) for df, name in tables]


def finish_run(out: Path, protocol: Protocol, base_dir: Path | None = None, track: bool = True,
               extra_info: dict | None = None, timings: dict | None = None,
               warnings: list[str] | None = None, units: dict[str, np.ndarray] | None = None,
               tracking_uri: str | None = None) -> "TrialResult":
    """Tables, example beats, report and MLflow run of a run folder whose samples are complete;
    ``warnings`` (e.g. skipped cohort records) join the analysis's; ``units``: the run's work units;
    ``tracking_uri``: the MLflow store when the protocol names none (default: a file in the folder)."""
    from vtrial.analysis import analyse
    from vtrial.report import write_report

    timings = dict(timings or {})
    t0 = time.perf_counter()
    an = analyse(protocol, store.scan_samples(out))
    an.warnings[:0] = list(warnings or [])
    h, s = protocol.content_hash, protocol.seed
    paths = write_tables(out, protocol, an)
    paths.append(write_example_beats(out, protocol, an.summary, base_dir, units))
    paths += write_report(out, protocol, an)
    timings["aggregate_s"] = time.perf_counter() - t0
    info = {"protocol_hash": h, "seed": s, **(extra_info or {}), "timings_s": timings, "warnings": an.warnings}
    info["invocations"] = _invocations(out / RUN_INFO) + [
        {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "batches_run": info.get("batches_run"),
         "events": info.get("events", []), "timings_s": timings}]
    (out / RUN_INFO).write_text(json.dumps(info, indent=1))
    run_id = None
    if track:
        from vtrial.tracking import log_run

        metrics = dict(an.metrics)
        reasons = store.scan_samples(out).group_by("reason").len().collect()
        for r in reasons.iter_rows(named=True):
            metrics[f"samples_reason.{r['reason'] or 'ok'}"] = r["len"]
        run_id = log_run(out, protocol, metrics, paths + [out / RESOLVED, out / store.SAMPLES, out / RUN_INFO],
                         protocol.tracking.uri or tracking_uri, protocol.tracking.experiment)
    return TrialResult(out, protocol, an.patients, an.arms, an.summary, run_id=run_id, timings_s=timings, analysis=an)


def _invocations(path: Path) -> list[dict]:
    """The earlier invocations recorded in a run folder's run_info.json (a resumed run keeps them)."""
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("invocations", []))
    except (json.JSONDecodeError, AttributeError):
        return []


class _progress:
    """A rich progress bar over samples (or nothing)."""

    def __init__(self, enabled: bool, total: int, name: str):
        self.enabled, self.total, self.name = enabled, total, name

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} samples"),
                            TimeRemainingColumn())
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False
