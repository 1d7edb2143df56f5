"""A run folder's own records: the resolved protocol (what ``--resume`` and refusals compare against),
the cohort report and the run record (``run_info.json``, one entry per invocation), and the rules that
keep one folder to one trial."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from vtrial.outputs.run_location import RunLocation
from vtrial.spec.protocol import Protocol, dump_protocol

LOCK = ".vtrial.lock"  # held by the live run writing the folder
RESOLVED = "protocol.resolved.yaml"
RUN_INFO = "run_info.json"
COHORT_REPORT = "cohort_report.json"


class RunFolderError(RuntimeError):
    """A run folder that cannot take this run, with the reason; nothing in it was changed."""


def read_resolved(out: Path) -> Protocol:
    """The protocol recorded in a run folder; ``RunFolderError`` when it cannot be read."""
    path = Path(out) / RESOLVED
    try:
        return Protocol.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise RunFolderError(
            f"{path} is unreadable ({type(exc).__name__}: {first}); it records which trial the folder holds: "
            f"restore it, or choose another --out. Nothing was changed."
        ) from None


def _refuse_file(out: Path, shown: str) -> None:
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{shown} is a file, not a folder; choose another --out. Nothing was overwritten.")


def check_output(out: Path, protocol: Protocol, resume: bool, shown: str | None = None) -> None:
    """Refuse a folder holding another trial, or this one without --resume; writes nothing. ``shown``:
    the folder's name in messages (a URI whose staging folder ``out`` is)."""
    shown = shown or str(out)
    _refuse_file(out, shown)
    if (out / RESOLVED).exists():
        held = read_resolved(out)
        if held.content_hash != protocol.content_hash:
            raise RunFolderError(
                f"{shown} already holds a different trial (protocol hash {held.content_hash}, "
                f"this one {protocol.content_hash}); choose another --out. Nothing was overwritten."
            )
        if not resume:
            raise RunFolderError(
                f"{shown} already holds this trial (hash {protocol.content_hash}); use --resume "
                f"to finish it, or choose another --out. Nothing was overwritten."
            )
    elif out.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise RunFolderError(
            f"{shown} is not empty and holds no vtrial run ({RESOLVED} missing); choose another "
            f"--out. Nothing was overwritten."
        )


class RunLock:
    """One live run per folder: ``OUT/.vtrial.lock`` holds the writer's host, pid and start time. A lock
    whose process is gone (a killed driver) is stale and taken over; one held by a live process on this
    host refuses the second run. ``release`` removes it, and the folder too when the run left nothing."""

    def __init__(self, out: Path, shown: str | None = None):
        self.out, self.shown = Path(out), shown or str(out)
        self.path = self.out / LOCK
        self.made_folder = self.held = False
        self.stale: dict | None = None  # the lock of a dead run this one took over

    def acquire(self) -> RunLock:
        _refuse_file(self.out, self.shown)
        self.made_folder = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = _read_lock(self.path)
                if _alive(held):
                    self._undo_folder()
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("started", 0)))
                    raise RunFolderError(
                        f"{self.shown} is being written by another vtrial run (pid {held.get('pid')} on "
                        f"{held.get('host')}, started {when}); wait for it or choose another --out. Nothing was "
                        f"changed."
                    ) from None
                self.stale = held
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            self.held = True
            return self
        raise RunFolderError(f"{self.shown}: could not take the run lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        self._undo_folder()

    def _undo_folder(self) -> None:
        if self.made_folder and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()  # a refused run leaves no trace

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _read_lock(path: Path) -> dict:
    try:
        held = json.loads(path.read_text())
        return held if isinstance(held, dict) else {}
    except (OSError, ValueError):
        return {}  # torn or unreadable: nobody can be shown to hold it


def _alive(held: dict) -> bool:
    """Whether the lock's process still runs (on this host; another host's lock is taken as live)."""
    pid = held.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if held.get("host") != socket.gethostname():
        return True  # a shared folder written from another machine: cannot tell, so do not take it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def stage(loc: RunLocation, resume: bool) -> None:
    """A run on a URI: a fresh staging folder holding what check_output needs (the recorded protocol; on
    --resume, everything the URI holds)."""
    if loc.local.exists():
        shutil.rmtree(loc.local)
    loc.local.mkdir(parents=True)
    try:
        if resume:
            loc.pull()
        else:
            loc.pull(only=(RESOLVED,))
            if not (loc.local / RESOLVED).exists() and loc.holds_files():
                raise RunFolderError(
                    f"{loc} is not empty and holds no vtrial run ({RESOLVED} missing); choose "
                    f"another --out. Nothing was overwritten."
                )
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"output folder {loc}: {exc}") from None
    if not any(loc.local.iterdir()):
        loc.local.rmdir()  # check_output and record_output treat an absent folder as a fresh one


def record_output(out: Path, protocol: Protocol, cohort_report: dict) -> list[Path]:
    """Create the folder and record the resolved protocol and the cohort report; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RESOLVED).exists():
        (out / RESOLVED).write_text(dump_protocol(protocol))
    (out / COHORT_REPORT).write_text(json.dumps(cohort_report, indent=1, default=str))
    return [out / RESOLVED, out / COHORT_REPORT]


def write_run_info(out: Path, info: dict, timings: dict) -> Path:
    """The run record, keeping the earlier invocations of a resumed run and adding this one."""
    path = Path(out) / RUN_INFO
    info = {
        **info,
        "invocations": _invocations(path)
        + [
            {
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "batches_run": info.get("batches_run"),
                "events": info.get("events", []),
                "timings_s": timings,
            }
        ],
    }
    path.write_text(json.dumps(info, indent=1))
    return path


def _invocations(path: Path) -> list[dict]:
    """The earlier invocations recorded in a run folder's run_info.json (a resumed run keeps them)."""
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text()).get("invocations", []))
    except (json.JSONDecodeError, AttributeError):
        return []
