"""Where a protocol's cohort comes from: find the population file, clinical table or WFDB folder it
names, check that they exist (``cohort_problems``, for ``vtrial validate``), and load the cohort.

A relative data path is looked up in the protocol's folder, then in ``data_dir`` (``vtrial run --data``),
then in the working directory.
"""

from __future__ import annotations

from pathlib import Path

from vtrial.sources.cohort import Cohort
from vtrial.sources.population import builtin_population, load_population, sample_cohort
from vtrial.sources.table_cohort import cohort_from_table
from vtrial.sources.wfdb_cohort import cohort_from_wfdb


def cohort_path(population: str, base_dir: Path | None = None) -> Path:
    """A population: a built-in name (``vtrial/data/cohorts/NAME.yaml``), or a YAML path relative to the
    protocol's folder (else the working directory)."""
    p = Path(population)
    if p.suffix not in (".yaml", ".yml"):
        return builtin_population(population)
    candidates = [p] if p.is_absolute() else [(base_dir or Path.cwd()) / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"population file not found: {population!r} (looked in: {', '.join(str(c) for c in candidates)})"
    )


def data_path(value: str, base_dir: Path | None = None, data_dir: Path | None = None) -> Path:
    """A data path as the protocol gives it: absolute, or relative to the protocol's folder, to
    ``data_dir``, or to the working directory (the first that exists; else the first candidate)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    candidates = [(base_dir or Path.cwd()) / p, *([Path(data_dir) / p] if data_dir else []), Path.cwd() / p]
    return next((c for c in candidates if c.exists()), candidates[0])


def cohort_problems(spec, base_dir: Path | None = None, data_dir: Path | None = None) -> list[str]:
    """'cohort.FIELD: message' for each file or folder the cohort section names that does not exist."""
    problems = []
    if spec.population is not None:
        try:
            cohort_path(spec.population, base_dir)
        except FileNotFoundError as exc:
            problems.append(f"cohort.population: {exc}")
    for key, kind in (("table", "file"), ("wfdb", "folder")):
        value = getattr(spec, key)
        if value is not None:
            found = data_path(value, base_dir, data_dir)
            if not (found.is_file() if kind == "file" else found.is_dir()):
                hint = "" if data_dir else "; give the data folder with --data DIR"
                problems.append(f"cohort.{key}: {kind} not found: {value} (looked in {found}){hint}")
    return problems


def load_cohort(
    spec, seed: int, base_dir: Path | None = None, strict: bool = False, data_dir: Path | None = None
) -> tuple[Cohort, dict]:
    """The cohort a protocol's ``cohort`` section names (``vtrial.spec.protocol.CohortSpec``) and its
    report (source, patients, records or subjects skipped with reasons)."""
    if spec.table is not None:
        return cohort_from_table(data_path(spec.table, base_dir, data_dir), seed, spec.size)
    if spec.wfdb is not None:
        return cohort_from_wfdb(data_path(spec.wfdb, base_dir, data_dir), seed, spec.lead or "II", spec.size, strict)
    path = cohort_path(spec.population, base_dir)
    cohort = sample_cohort(load_population(path), spec.size, seed)
    return cohort, {"source": "population", "path": str(path), "patients": cohort.size, "skipped": []}
