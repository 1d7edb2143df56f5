"""The trial engine: protocol → work units → Ray actors holding sampler replicas → Parquet parts → tables.

Each Ray actor (``SamplerReplica``) holds one sampler replica, created with the protocol's
``gpus_per_replica`` (CPU when 0) and loaded once; the driver feeds it batches of work units through
Ray's ``ActorPool`` and writes each finished batch as a Parquet part at once, so the driver never holds
the whole trial. Batch boundaries depend only on the protocol, and every unit draws from its own seed,
so the tables are identical whatever the number of replicas. Ray starts locally (on 127.0.0.1) when no
address is given.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from vtrial import store
from vtrial.cohort import load_cohort
from vtrial.exposure import arm_exposure
from vtrial.protocol import Protocol, dump_protocol

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
    """All work units of a trial, one row per (arm, patient, time), in ``expand`` order; ``cohort``: the
    protocol's cohort when already loaded (a table or WFDB cohort costs seconds to load and fit)."""
    if cohort is None:
        _, cohort, _ = resolve_cohort(protocol, base_dir)
    conc, block = zip(*(arm_exposure(protocol, arm, cohort.size) for arm in protocol.arms))
    return unit_table(cohort, np.stack(conc), np.stack(block), protocol.schedule.times_h)


def unit_table(cohort, conc: np.ndarray, block: np.ndarray, times_h, patient_ids=None) -> dict[str, np.ndarray]:
    """Work units (arm, patient, time) in ``expand`` order from a cohort and its exposures: ``conc``
    (A, N, T) free nM, ``block`` (A, N, T, 7). ``patient``: the index, or ``patient_ids`` (e.g. a study's
    subject IDs, which then key each unit's randomness)."""
    n_a, n, n_t = conc.shape
    a_idx, p_idx, t_idx = (x.ravel() for x in np.meshgrid(np.arange(n_a), np.arange(n), np.arange(n_t), indexing="ij"))
    w = cohort.waves
    patient = p_idx.astype(np.int32) if patient_ids is None else np.asarray(patient_ids, np.int64)[p_idx]
    return {
        "arm_idx": a_idx.astype(np.int32), "patient": patient, "time_idx": t_idx.astype(np.int32),
        "time_h": np.asarray(times_h, float)[t_idx],
        "conc_free_nM": conc[a_idx, p_idx, t_idx],
        "block": block[a_idx, p_idx, t_idx],
        "t_ms": w.t_ms.numpy()[p_idx], "sigma_ms": w.sigma_ms.numpy()[p_idx],
        "height_mv": w.height_mv.numpy()[p_idx], "rr_s": w.rr_s.numpy()[p_idx],
        "sensitivity": cohort.sensitivity[p_idx],
        "female": (cohort.sex == "F").astype(np.float64)[p_idx], "age_y": cohort.age_y[p_idx],
        "weight_kg": cohort.weight_kg[p_idx],
    }


def batch_slices(n_units: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n_units)) for i in range(0, n_units, batch_size)]


def take(units: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[sl]) for k, v in units.items()}


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

def _replica_class():
    import ray

    @ray.remote
    class SamplerReplica:
        """One sampler replica; loads once, picks its device here, then takes batches."""

        def __init__(self, protocol_dict: dict, threads: int, base_dir: str | None):
            import torch

            from vtrial.protocol import Protocol

            torch.set_num_threads(max(1, threads))
            self.gpu_ids = ray.get_gpu_ids()
            device = "cuda" if self.gpu_ids and torch.cuda.is_available() else "cpu"
            self.protocol = Protocol.model_validate(protocol_dict)
            self.sampler = make_sampler(self.protocol, device, Path(base_dir) if base_dir else None)
            self.node_id = ray.get_runtime_context().get_node_id()

        def run(self, index: int, units: dict, seed: int):
            t0 = time.perf_counter()
            rows = self.sampler.sample(units, seed)
            return index, rows, {"node_id": self.node_id, "gpu_ids": [str(g) for g in self.gpu_ids],
                                 "pid": os.getpid(), "compute_s": time.perf_counter() - t0}

        def where(self):
            return {"node_id": self.node_id, "gpu_ids": [str(g) for g in self.gpu_ids], "pid": os.getpid()}

    return SamplerReplica


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


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start Ray locally on loopback; True if this call started it."""
    import ray

    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        return True
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", _node_ip_address="127.0.0.1")
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

def check_output(out: Path, protocol: Protocol, resume: bool) -> None:
    """Refuse a folder holding another trial, or this one without --resume; writes nothing."""
    resolved = out / RESOLVED
    if resolved.exists():
        import yaml

        held = Protocol.model_validate(yaml.safe_load(resolved.read_text()))
        if held.content_hash != protocol.content_hash:
            raise RunError(f"{out} already holds a different trial (protocol hash {held.content_hash}, "
                           f"this one {protocol.content_hash}); choose another --out. Nothing was overwritten.")
        if not resume:
            raise RunError(f"{out} already holds this trial (hash {protocol.content_hash}); use --resume to "
                           f"finish it, or choose another --out. Nothing was overwritten.")
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{out} is not empty and holds no vtrial run ({RESOLVED} missing); choose another --out. "
                       f"Nothing was overwritten.")


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

    def samples(self) -> pl.DataFrame:
        return store.read_samples(self.out)


def run_trial(protocol: Protocol, out: str | Path | None = None, address: str | None = None,
              seed: int | None = None, resume: bool = False, replicas: int | None = None,
              progress: bool = True, track: bool = True, base_dir: Path | None = None,
              strict: bool = False) -> TrialResult:
    """Run a trial end to end; returns its tables as polars DataFrames. ``strict``: a WFDB record that
    cannot be used stops the run instead of being skipped (and listed in ``cohort_report.json``)."""
    import ray
    from ray.util import ActorPool

    if seed is not None:
        protocol = protocol.replace(seed=seed)
    address = address or protocol.compute.address
    replicas = replicas or protocol.compute.replicas
    out = Path(out or protocol.output.dir)
    timings = {}
    t0 = time.perf_counter()
    protocol, cohort, cohort_report = resolve_cohort(protocol, base_dir, strict)
    timings["cohort_s"] = time.perf_counter() - t0
    check_output(out, protocol, resume)

    if protocol.sampling.sampler == "worldmodel":  # a bad checkpoint is refused here, not in every actor
        from vtrial.model.worldmodel import CheckpointError, load_checkpoint

        try:
            load_checkpoint(checkpoint_path(protocol, base_dir))
        except CheckpointError as exc:
            raise RunError(f"sampling.checkpoint: {exc}") from None

    t0 = time.perf_counter()
    units = build_units(protocol, base_dir, cohort)
    slices = batch_slices(len(units["patient"]), protocol.compute.batch_size)
    todo = [i for i in range(len(slices)) if i not in store.done_parts(out)]
    timings["plan_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    started = connect(address)
    timings["ray_start_s"] = time.perf_counter() - t0
    nodes_used: dict[str, int] = {}
    compute_s = 0.0
    try:
        check_resources(protocol, replicas)
        record_output(out, protocol)  # only once the run can start: a refused run leaves no trace
        (out / COHORT_REPORT).write_text(json.dumps(cohort_report, indent=1, default=str))
        c = protocol.compute
        cls = _replica_class()
        actors = [cls.options(num_cpus=c.cpus_per_replica, num_gpus=c.gpus_per_replica, max_restarts=2,
                              max_task_retries=2).remote(protocol.to_dict(), int(c.cpus_per_replica),
                                                             str(base_dir) if base_dir else None)
                  for _ in range(replicas)]
        t0 = time.perf_counter()
        ray.get([a.where.remote() for a in actors])
        timings["replicas_ready_s"] = time.perf_counter() - t0
        arm_names = [a.name for a in protocol.arms]
        total = sum(slices[i].stop - slices[i].start for i in todo) * protocol.sampling.samples_per_patient
        pool = ActorPool(actors)
        t0 = time.perf_counter()
        with _progress(progress, total, protocol.name) as advance:
            results = pool.map_unordered(lambda a, i: a.run.remote(i, take(units, slices[i]), protocol.seed), todo)
            for index, rows, where in results:
                n = store.write_part(out, index, rows, arm_names, protocol.content_hash, protocol.seed)
                nodes_used[where["node_id"]] = nodes_used.get(where["node_id"], 0) + 1
                compute_s += where["compute_s"]
                advance(n)
        timings["sampling_s"] = time.perf_counter() - t0
        timings["replica_compute_s"] = compute_s
    finally:
        if started:
            ray.shutdown()

    return finish_run(out, protocol, base_dir, track=track, extra_info={
        "replicas": replicas, "address": address, "batches": len(slices), "batches_run": len(todo),
        "batches_by_node": nodes_used, "cohort": {k: v for k, v in cohort_report.items() if k != "records"}},
        timings=timings, warnings=cohort_warnings(cohort_report), units=units)


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
    very samples in the tables. ``units``: the run's work units, when the caller has them."""
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
               warnings: list[str] | None = None, units: dict[str, np.ndarray] | None = None) -> "TrialResult":
    """Tables, example beats, report and MLflow run of a run folder whose samples are complete;
    ``warnings`` (e.g. skipped cohort records) join the analysis's; ``units``: the run's work units."""
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
    (out / RUN_INFO).write_text(json.dumps(info, indent=1))
    run_id = None
    if track:
        from vtrial.tracking import log_run

        metrics = dict(an.metrics)
        reasons = store.scan_samples(out).group_by("reason").len().collect()
        for r in reasons.iter_rows(named=True):
            metrics[f"samples_reason.{r['reason'] or 'ok'}"] = r["len"]
        run_id = log_run(out, protocol, metrics, paths + [out / RESOLVED, out / store.SAMPLES, out / RUN_INFO],
                         protocol.tracking.uri, protocol.tracking.experiment)
    return TrialResult(out, protocol, an.patients, an.arms, an.summary, run_id, timings, an)


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
