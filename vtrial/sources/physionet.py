"""``vtrial data download``: fetch a PhysioNet database with wfdb's own downloader.

wfdb lists the database's records (its ``RECORDS`` file, nested folders included) and reads each
record's header; each header and signal file is then fetched by wfdb's file downloader: a file already
complete is left alone and a partial one (an interrupted download) is completed from where it stopped
with an HTTP range request — so running the command again resumes. Annotation files are not fetched
(vtrial does not use them). Each record is retried a few times on a broken transfer; progress is shown
per record. Besides the WFDB records, the study's clinical table is fetched (``DATABASES``).

``base_url`` points wfdb at a mirror laid out like PhysioNet (``BASE/content/DB/`` naming the version,
``BASE/files/DB/VERSION/...`` holding the files); the tests use a server on loopback.

A mirror is not trusted: every name it gives (``RECORDS`` entries, the version, the signal and segment
files a header names) is checked before anything is written — a relative path of plain parts, no ``..``,
no absolute path, no hidden file, signal files only the record's own with a signal-file extension — and
every write goes through ``dest_path``, which proves the final path lies inside ``dest``. A refused name
is reported with its reason (``DownloadReport.refused``) and nothing is written for it.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from vtrial.spec.paths import RefusedName, check_relative, dest_path

PHYSIONET = "https://physionet.org"
DATABASES = {
    "ecgrdvq": {
        "title": "ECG effects of ranolazine, dofetilide, verapamil and quinidine (FDA, SCR-002)",
        "extra_files": ("SCR-002.Clinical.Data.csv",),
    },
    "ecgdmmld": {
        "title": "ECG effects of dofetilide, mexiletine, lidocaine and moxifloxacin (FDA, SCR-003)",
        "extra_files": ("SCR-003.Clinical.Data.csv",),
    },
}


@dataclass
class DownloadReport:
    database: str
    version: str
    dest: Path
    records: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    extra_files: list[str] = field(default_factory=list)
    missing_extra_files: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # name from the mirror → why it was not written


SIGNAL_SUFFIXES = (".dat", ".mat", ".edf", ".xyz")  # what a WFDB header may name as its signal files


def check_signal_file(name, record_base: str, what: str = "signal file") -> str:
    """A file a header names: a base name of the record's own (``RECORD...``) with a signal-file extension."""
    check_relative(name, what)
    if "/" in name:
        raise RefusedName(f"{what} {name!r}: a header names files beside it, not in other folders")
    if not name.startswith(record_base) or not name.endswith(SIGNAL_SUFFIXES):
        raise RefusedName(f"{what} {name!r}: not {record_base}* with one of {', '.join(SIGNAL_SUFFIXES)}")
    return name


@contextlib.contextmanager
def _mirror(base_url: str):
    """Point wfdb's download module at ``base_url`` for the duration (module-level settings)."""
    from wfdb.io import download

    saved = download.config.db_index_url, download.PN_CONTENT_URL
    download.config.db_index_url = base_url.rstrip("/") + "/files/"
    download.PN_CONTENT_URL = base_url.rstrip("/") + "/content/"
    try:
        yield download
    finally:
        download.config.db_index_url, download.PN_CONTENT_URL = saved


def record_names(download, db_dir: str) -> list[str]:
    """The database's records from its ``RECORDS`` file, nested ``RECORDS`` of sub-folders expanded."""
    out = []
    for rec in download.get_record_list(db_dir):
        if rec.endswith("/"):
            out += [posixpath.join(rec, r) for r in download.get_record_list(posixpath.join(db_dir, rec))]
        else:
            out.append(rec)
    return out


def record_files(db_dir: str, rec: str) -> list[str]:
    """A record's header and its signal files, each once. (``wfdb.dl_database`` lists a signal file once
    per signal in it; fetched concurrently, a partial file would then be continued twice.)"""
    import wfdb

    check_relative(rec, "record")
    folder, base = posixpath.split(rec)
    header = wfdb.rdheader(base, pn_dir=posixpath.join(db_dir, folder))
    names = [check_signal_file(n, base) for n in getattr(header, "file_name", None) or []]
    for seg in getattr(header, "seg_name", None) or []:  # multi-segment records
        if seg != "~":
            names.append(
                check_signal_file(seg + ".hea", base, "segment")
                if not seg.endswith("_layout")
                else check_relative(seg + ".hea", "segment")
            )
            if not seg.endswith("_layout"):
                names += [
                    check_signal_file(n, base)
                    for n in wfdb.rdheader(seg, pn_dir=posixpath.join(db_dir, folder)).file_name or []
                ]
    return [rec + ".hea"] + [posixpath.join(folder, n) for n in dict.fromkeys(names)]


def _fetch(download, db_dir: str, path: str, dest: Path) -> None:
    """wfdb's file download: skipped when complete, continued with a range request when partial; only to
    a path proven inside ``dest``."""
    dest_path(dest, path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # wfdb prints a line when it continues a file
        download.dl_pn_file((posixpath.basename(path), posixpath.dirname(path), db_dir, str(dest), True, False))


NOT_FOUND = "not found on the server"
# a broken transfer (connection reset, timeout, truncated body, HTTP 5xx): worth another attempt
TRANSFER_ERRORS = (requests.RequestException, ConnectionError, TimeoutError, EOFError)
BACKOFF_S = 0.5  # first wait between attempts; doubled each time, at most MAX_BACKOFF_S
MAX_BACKOFF_S = 8.0


def _attempts(fetch: Callable[[], object], retries: int, backoff_s: float = BACKOFF_S) -> str | None:
    """Run ``fetch`` up to ``retries`` times with exponential backoff (each attempt resumes the partial
    files of the last): None once it succeeds, else the last error. A missing file is not retried, and
    an error that is not a broken transfer propagates."""
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(retries),
            reraise=True,
            wait=wait_exponential(multiplier=backoff_s, max=MAX_BACKOFF_S),
            retry=retry_if_exception_type(TRANSFER_ERRORS),
        ):
            with attempt:
                fetch()
    except FileNotFoundError:
        return NOT_FOUND
    except TRANSFER_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def download_database(
    name: str,
    dest: str | Path,
    base_url: str = PHYSIONET,
    retries: int = 3,
    on_record: Callable[[str, int, int], None] | None = None,
) -> DownloadReport:
    """Download database ``name`` into ``dest`` (created); resumable. ``on_record(record, i, n)`` is
    called after each record. Records that still fail after ``retries`` attempts are listed in the
    report's ``failed`` with the last error; nothing already downloaded is removed."""
    if name not in DATABASES:
        raise ValueError(f"unknown database {name!r}; known: {', '.join(sorted(DATABASES))}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _mirror(base_url) as download:
        try:
            version = download.get_version(name)
        except Exception as exc:
            raise ConnectionError(f"cannot reach {base_url}/content/{name}/: {type(exc).__name__}: {exc}") from None
        try:
            check_relative(version, "version")
        except RefusedName as exc:
            raise ConnectionError(f"{base_url}/content/{name}/: {exc}") from None
        db_dir = posixpath.join(name, version)
        report = DownloadReport(name, version, dest)
        records = record_names(download, db_dir)
        for i, rec in enumerate(records, 1):
            try:
                error = _attempts(
                    lambda rec=rec: [_fetch(download, db_dir, f, dest) for f in record_files(db_dir, rec)], retries
                )
            except RefusedName as exc:  # nothing of this record is written
                report.refused[rec] = str(exc)
                error = None
            except ValueError as exc:  # a header wfdb cannot parse (HeaderSyntaxError and kin): not retried
                error = f"unreadable header: {type(exc).__name__}: {exc}"
            if rec in report.refused:
                pass
            elif error is None:
                report.records.append(rec)
            else:
                report.failed[rec] = error
            if on_record:
                on_record(rec, i, len(records))
        for f in DATABASES[name]["extra_files"]:
            error = _attempts(lambda f=f: _fetch(download, db_dir, f, dest), retries)
            if error is None:
                report.extra_files.append(f)
            elif error == NOT_FOUND:
                report.missing_extra_files.append(f)
            else:
                report.failed[f] = error
    return report
