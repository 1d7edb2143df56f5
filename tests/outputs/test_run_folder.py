"""A run folder holds one trial: refusals that change nothing, and a run record that keeps every invocation."""

import json
import os
import socket
import subprocess
import sys

import pytest

from vtrial.outputs.run_folder import (
    COHORT_REPORT,
    LOCK,
    RESOLVED,
    RunFolderError,
    RunLock,
    check_output,
    read_resolved,
    record_output,
    write_run_info,
)
from vtrial.spec.protocol import parse_protocol

P = {
    "name": "f",
    "seed": 1,
    "cohort": {"size": 2},
    "arms": [{"name": "placebo", "placebo": True}],
    "schedule": {"times_h": [0, 1]},
    "sampling": {"samples_per_patient": 2},
}


def test_a_folder_takes_one_trial(tmp_path):
    p = parse_protocol(P)
    check_output(tmp_path / "new", p, resume=False)  # absent: fine, nothing made
    assert not (tmp_path / "new").exists()
    paths = record_output(tmp_path / "run", p, {"source": "population", "patients": 2})
    assert [x.name for x in paths] == [RESOLVED, COHORT_REPORT]
    assert read_resolved(tmp_path / "run").content_hash == p.content_hash
    with pytest.raises(RunFolderError, match="already holds this trial .*use --resume"):
        check_output(tmp_path / "run", p, resume=False)
    check_output(tmp_path / "run", p, resume=True)
    other = parse_protocol({**P, "seed": 2})
    with pytest.raises(RunFolderError, match="already holds a different trial"):
        check_output(tmp_path / "run", other, resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty and holds no vtrial run"):
        check_output(tmp_path / "junk", p, resume=False)
    assert (tmp_path / "junk" / "x.txt").read_text() == "mine"


def test_run_info_keeps_earlier_invocations(tmp_path):
    write_run_info(tmp_path, {"batches_run": 3}, {"sampling_s": 1.0})
    path = write_run_info(tmp_path, {"batches_run": 1, "events": ["resume"]}, {"sampling_s": 0.5})
    info = json.loads(path.read_text())
    assert [i["batches_run"] for i in info["invocations"]] == [3, 1]
    assert info["invocations"][1]["events"] == ["resume"] and info["batches_run"] == 1
    path.write_text("{torn")  # a record cut by a crash: this invocation starts a new one
    assert len(json.loads(write_run_info(tmp_path, {}, {}).read_text())["invocations"]) == 1


def test_one_live_run_per_folder_and_a_dead_runs_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = RunLock(out).acquire()
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    first.release()
    assert not out.exists()  # a run that left nothing leaves no folder either
    out.mkdir()
    with pytest.raises(RunFolderError, match=r"is being written by another vtrial run \(pid \d+"):
        _second_process_lock(out)
    assert (out / LOCK).exists()  # the refused run does not remove the live run's lock
    (out / LOCK).unlink()
    out.rmdir()
    # a killed driver's lock: its pid is gone
    out.mkdir()
    dead = _dead_pid()
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "started": 0}))
    taken = RunLock(out).acquire()
    assert taken.stale["pid"] == dead and json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    taken.release()
    assert not (out / LOCK).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        RunLock(tmp_path / "file").acquire()
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        check_output(tmp_path / "file", parse_protocol(P), resume=False)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _second_process_lock(out):
    """The lock as another live process on this host holds it."""
    lock = RunLock(out)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "started": 0}))
        lock.acquire()
    finally:
        holder.kill()
        holder.wait()


def test_an_unreadable_resolved_protocol_is_named(tmp_path):
    out = tmp_path / "run"
    record_output(out, parse_protocol(P), {})
    for content in (b"name: [unclosed\n", b"\xff\xfe junk", b"name: x\n"):  # bad YAML, not UTF-8, not a protocol
        (out / RESOLVED).write_bytes(content)
        with pytest.raises(RunFolderError, match=r"protocol.resolved.yaml is unreadable .*restore it"):
            read_resolved(out)
        with pytest.raises(RunFolderError, match="is unreadable"):
            check_output(out, parse_protocol(P), resume=True)
