"""Chaos: a replica process killed mid-run, and the driver process killed mid-run then resumed. Either
way every (arm, patient, time, sample) row exists exactly once and equals an uninterrupted run's row."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import yaml

from vtrial.outputs import store
from vtrial.spec.protocol import parse_protocol
from vtrial.trial import run_trial

BIN = Path(sys.executable).parent
KEY = ["arm_idx", "patient", "time_idx", "sample"]
CHAOS = {
    "name": "chaos",
    "seed": 5,
    "cohort": {"population": "healthy_adults", "size": 16},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
    ],
    "schedule": {"times_h": [-0.5, 1.0, 2.0, 4.0, 8.0]},
    # 160 units in 80 batches of 2 × 96 samples: several seconds of sampling to strike in
    "sampling": {"samples_per_patient": 96, "sampler": "mechanistic"},
    "compute": {"replicas": 2, "cpus_per_replica": 1, "batch_size": 2},
}
N_BATCHES = 80


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("chaos") / "reference"
    run_trial(parse_protocol(CHAOS), out=out, progress=False, track=False)
    return store.read_samples(out).drop("protocol_hash")


@pytest.fixture
def protocol_file(tmp_path):
    path = tmp_path / "chaos.yaml"
    path.write_text(yaml.safe_dump(CHAOS))
    return path


def start(protocol_file, out, *extra):
    return subprocess.Popen(
        [str(BIN / "vtrial"), "run", str(protocol_file), "--out", str(out), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_parts(proc, out, n, timeout_s=180.0) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        done = len(store.done_parts(out))
        if done >= n:
            return done
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the strike ({done} parts): {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    pytest.fail(f"no {n} parts within {timeout_s} s")


def replicas_of(proc) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True) if "SamplerReplica" in " ".join(p.cmdline())]


def same_rows(out, reference):
    got = store.read_samples(out).drop("protocol_hash")
    assert got.height == reference.height
    assert got.select(KEY).is_duplicated().sum() == 0  # every row exactly once
    assert got.equals(reference)  # and equal to the uninterrupted run's


def test_killed_replica_is_replaced_and_nothing_is_lost(protocol_file, tmp_path, reference, assert_loopback_only):
    out = tmp_path / "out"
    proc = start(protocol_file, out)
    try:
        wait_for_parts(proc, out, 3)
        victims = replicas_of(proc)
        assert len(victims) == 2, victims
        # the embedded cluster's servers listen on loopback only
        assert_loopback_only(psutil.Process(proc.pid).children(recursive=True))
        victims[0].send_signal(signal.SIGKILL)
        killed_at = len(store.done_parts(out))
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert killed_at < N_BATCHES, "the run finished before the replica was killed: the test proves nothing"
    same_rows(out, reference)
    info = json.loads((out / "run_info.json").read_text())
    pids = {w["pid"] for w in info["workers"]}
    assert victims[0].pid in pids and len(pids) >= 3, info["workers"]  # the killed replica's work went elsewhere
    assert sum(w["batches"] for w in info["workers"]) == N_BATCHES


def test_killed_driver_resumes_and_finishes_only_what_is_missing(protocol_file, tmp_path, reference):
    out = tmp_path / "out"
    proc = start(protocol_file, out)
    try:
        wait_for_parts(proc, out, 4)
        ray_procs = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # the driver alone, as a crash would
        proc.wait(timeout=30)
    finally:
        # its orphaned local Ray processes die with the machine in a real crash
        for p in ray_procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(ray_procs, timeout=30)
    done = store.done_parts(out)
    assert 4 <= len(done) < N_BATCHES, "the driver finished before it was killed: the test proves nothing"
    assert not (out / "run_info.json").exists()
    # a torn part (storage that lost a write) and a stray temporary are found and redone on resume
    torn = sorted(done)[1]
    store.part_path(out, torn).write_bytes(b"PAR1")
    store.part_path(out, N_BATCHES - 1).with_suffix(".tmp").write_bytes(b"half")

    again = subprocess.run(
        [str(BIN / "vtrial"), "run", str(protocol_file), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "use --resume" in again.stdout + again.stderr  # no silent overwrite

    res = subprocess.run(
        [str(BIN / "vtrial"), "run", str(protocol_file), "--out", str(out), "--quiet", "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    same_rows(out, reference)
    info = json.loads((out / "run_info.json").read_text())
    assert info["batches_run"] == N_BATCHES - len(done) + 1  # the missing batches and the torn one
    assert any(f"part {torn} was unreadable" in e for e in info["events"])
    assert not list((out / store.SAMPLES).glob("*.tmp"))
    assert pl.read_parquet(out / "arms.parquet").height > 0


def test_sigterm_stops_cleanly_and_says_how_to_resume(protocol_file, tmp_path):
    """SIGTERM once exited -6 with a C++ stack dump. Now: exit 143, one line with the resume command, Ray
    shut down, the lock released and every finished part whole (resuming from there is what the killed-driver
    test above proves)."""
    out = tmp_path / "out"
    proc = start(protocol_file, out)
    try:
        wait_for_parts(proc, out, 3)
        ray_procs = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err[-3000:]
    said = " ".join(err.split())
    assert "stopped by SIGTERM" in said and f"--out {out} --resume" in said
    assert "Traceback" not in err and "SIGTERM received" not in err
    _, alive = psutil.wait_procs(ray_procs, timeout=30)
    assert not alive, [p.cmdline()[:3] for p in alive]  # Ray shut down with the driver: no orphans
    assert not (out / ".vtrial.lock").exists()
    done = store.done_parts(out)
    assert 3 <= len(done) < N_BATCHES, "the run finished before the signal: the test proves nothing"
    assert all(store.part_intact(store.part_path(out, i)) for i in done)
