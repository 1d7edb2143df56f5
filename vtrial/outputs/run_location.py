"""Where a run folder lives: a local path, or any pyarrow filesystem URI (``s3://``, ``gs://``,
``hdfs://``, ``abfs://``, ``file://``) on shared storage.

A run on a URI works in a local staging folder (``VTRIAL_CACHE``, default ``~/.cache/vtrial/runs``) and
mirrors it: each samples part is uploaded as soon as it is written, several at once in the background
(a driver that dies loses at most the batches still uploading, which a resume reruns), the tables,
report and run record when the run finishes; ``--resume`` first fetches
what the URI already holds. A local path is used in place, with nothing copied.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from vtrial.spec.paths import RefusedName, dest_path

URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
UPLOAD_THREADS = 8


def is_uri(out) -> bool:
    return isinstance(out, str) and bool(URI.match(out))


def cache_root() -> Path:
    return Path(os.environ.get("VTRIAL_CACHE") or Path.home() / ".cache" / "vtrial" / "runs")


class RunLocation:
    """A run folder: ``local`` is where vtrial reads and writes; ``uri`` (or None) where it is kept."""

    def __init__(self, out: str | Path):
        self.uri = str(out).rstrip("/") if is_uri(str(out)) else None
        self._uploads, self._pending = None, []
        self._made_dirs: set[str] = set()
        if self.uri is None:
            self.local = Path(out)
            self.fs = self.root = None
            return
        from pyarrow import fs as pafs

        try:
            self.fs, self.root = pafs.FileSystem.from_uri(self.uri)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad or unsupported URI
            raise ValueError(f"output folder {self.uri!r}: {exc}") from None
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        self.local = cache_root() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.root)[-60:]}-{digest}"

    def __str__(self) -> str:
        return self.uri or str(self.local)

    @property
    def remote(self) -> bool:
        return self.uri is not None

    def _remote_files(self) -> list[str]:
        """Paths (relative to the run folder) of every file the URI holds."""
        from pyarrow import fs as pafs

        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise ValueError(f"output folder {self.uri!r} is a file, not a folder")
        sel = pafs.FileSelector(self.root, recursive=True)
        return [
            i.path[len(self.root) :].lstrip("/") for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File
        ]

    def holds_files(self) -> bool:
        return self.remote and bool(self._remote_files())

    def pull(self, only: tuple[str, ...] | None = None) -> int:
        """Fetch into the staging folder every file the URI holds (or those of ``only``) that it lacks;
        returns the count. Every key is checked before anything is fetched: an object store's key may hold
        '..' or be absolute, and nothing is ever written outside the staging folder."""
        if not self.remote:
            return 0
        wanted = []
        for rel in self._remote_files():
            if only is not None and rel not in only:
                continue
            try:
                wanted.append((rel, dest_path(self.local, rel)))
            except RefusedName as exc:
                raise ValueError(f"{self.uri} holds a key vtrial will not fetch: {exc}; nothing was fetched") from None
        n = 0
        for rel, dest in wanted:
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".download")
            with self.fs.open_input_stream(f"{self.root}/{rel}") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
            os.replace(tmp, dest)
            n += 1
        return n

    def push(self, path: Path) -> None:
        """Upload one file of the staging folder (a part as it is written, or a finished table)."""
        if not self.remote:
            return
        rel = Path(path).relative_to(self.local).as_posix()
        target = f"{self.root}/{rel}"
        folder = target.rsplit("/", 1)[0]
        if folder not in self._made_dirs:  # once per folder, not once per part (a round trip on object stores)
            self.fs.create_dir(folder, recursive=True)
            self._made_dirs.add(folder)
        with open(path, "rb") as src, self.fs.open_output_stream(target) as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)

    def push_soon(self, path: Path) -> None:
        """Upload in the background (up to ``UPLOAD_THREADS`` at once); ``flush`` waits for them all."""
        if not self.remote:
            return
        if self._uploads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._uploads, self._pending = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="vtrial-upload"), []
        self._pending.append(self._uploads.submit(self.push, path))
        done = [f for f in self._pending if f.done()]
        for f in done:  # surface a failed upload as soon as it is seen
            self._pending.remove(f)
            f.result()

    def flush(self) -> None:
        """Wait for the background uploads; the first that failed raises."""
        if self._uploads is None:
            return
        pending, self._pending = self._pending, []
        try:
            for f in pending:
                f.result()
        finally:
            self._uploads.shutdown(wait=True)
            self._uploads = None

    def push_all(self, skip_folder: str | None = None, skip_names: tuple[str, ...] = ()) -> None:
        """Upload every file of the staging folder except those under ``skip_folder`` (already pushed) and
        those named in ``skip_names``."""
        if not self.remote:
            return
        for path in sorted(self.local.rglob("*")):
            if path.name in skip_names:
                continue
            if path.is_file() and not (skip_folder and path.relative_to(self.local).parts[0] == skip_folder):
                self.push(path)

    def delete_remote(self, rel: str) -> None:
        if self.remote:
            try:
                self.fs.delete_file(f"{self.root}/{rel}")
            except (FileNotFoundError, OSError):
                pass
