"""Relative paths from outside (a download mirror, a remote run folder) that must stay inside the folder
they are written to: plain parts only, no ``..``, no absolute path, no hidden file, and the final path
proven inside its root with links resolved."""

from __future__ import annotations

import re
from pathlib import Path

SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # one path part: no hidden file, no odd character


class RefusedName(ValueError):
    """A name from outside that vtrial will not write, with the reason."""


def check_relative(name, what: str = "name") -> str:
    """``name`` if it is a relative POSIX path of plain parts (letters, digits, ``_ . + -``; none hidden,
    none ``..``); else ``RefusedName``."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise RefusedName(f"{what} {name!r}: not a plain relative path")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise RefusedName(f"{what} {name!r}: an absolute path")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise RefusedName(f"{what} {name!r}: '..', '.' or an empty part")
        if part.startswith("."):
            raise RefusedName(f"{what} {name!r}: a hidden file or folder")
        if not SAFE_PART.fullmatch(part):
            raise RefusedName(f"{what} {name!r}: characters other than letters, digits and _ . + -")
    return name


def dest_path(dest: Path, rel: str) -> Path:
    """The path ``rel`` will be written to under ``dest``, once it is proven to lie inside ``dest`` (links
    resolved); ``RefusedName`` otherwise."""
    root = Path(dest).resolve()
    target = (root / check_relative(rel, "file")).resolve()
    if target == root or not target.is_relative_to(root):
        raise RefusedName(f"file {rel!r}: would be written outside {root}")
    return target
