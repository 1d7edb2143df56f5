"""A run folder's own records: the resolved protocol (what ``--resume`` and refusals compare against),
the cohort report and the run record (``run_info.json``, one entry per invocation), and the rules that
keep one folder to one trial."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from vtrial.outputs.run_location import RunLocation
from vtrial.spec.protocol import Protocol, dump_protocol

RESOLVED = "protocol.resolved.yaml"
RUN_INFO = "run_info.json"
COHORT_REPORT = "cohort_report.json"


class RunFolderError(RuntimeError):
    """A run folder that cannot take this run, with the reason; nothing in it was changed."""


def read_resolved(out: Path) -> Protocol:
    """The protocol recorded in a run folder."""
    return Protocol.model_validate(yaml.safe_load((Path(out) / RESOLVED).read_text()))


def check_output(out: Path, protocol: Protocol, resume: bool, shown: str | None = None) -> None:
    """Refuse a folder holding another trial, or this one without --resume; writes nothing. ``shown``:
    the folder's name in messages (a URI whose staging folder ``out`` is)."""
    shown = shown or str(out)
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
    elif out.exists() and any(out.iterdir()):
        raise RunFolderError(
            f"{shown} is not empty and holds no vtrial run ({RESOLVED} missing); choose another "
            f"--out. Nothing was overwritten."
        )


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
