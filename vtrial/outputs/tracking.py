"""MLflow tracking of a trial: one run with the flattened protocol, its hash, headline metrics and the
tables as artifacts. Default store: a SQLite file under the output folder (``sqlite:///OUT/mlflow.db``),
artifacts under ``OUT/mlartifacts``; a tracking URI is an option (the protocol's ``tracking.uri``, or
``vtrial run --tracking-uri`` / ``MLFLOW_TRACKING_URI`` when the protocol names none).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import urllib.parse
from pathlib import Path

MAX_PARAM_CHARS = 500
ENV = "MLFLOW_TRACKING_URI"


def flatten(d, prefix: str = "") -> dict[str, str]:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, (list, tuple)) and any(isinstance(x, (dict, list, tuple)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = str(d)[:MAX_PARAM_CHARS]
    return out


def _safe_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


@contextlib.contextmanager
def _own_tracking_uri():
    """MLflow's ``set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the process environment; it
    is restored on leaving, so one run's store does not leak into later runs or the processes they start."""
    saved = os.environ.get(ENV)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


def log_run(
    out: Path,
    protocol,
    metrics: dict[str, float],
    artifacts: list[Path],
    uri: str | None = None,
    experiment: str = "vtrial",
) -> str:
    """Log one MLflow run of a trial; returns its run id."""
    with _own_tracking_uri():
        return _log_run(out, protocol, metrics, artifacts, uri, experiment)


class TrackingError(RuntimeError):
    """An MLflow store that cannot take the run, with the reason."""


TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "databricks")


def check_tracking(uri: str | None, timeout_s: float = 3.0) -> None:
    """Before any sampling: a tracking URI of a known kind, whose server answers (a closed port once cost
    four minutes of retries and a traceback after the whole trial). ``TrackingError`` says what is wrong."""
    if uri is None:
        return
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if "://" in uri and scheme not in TRACKING_SCHEMES:
        raise TrackingError(f"tracking URI {uri!r}: unknown kind {scheme!r}; use one of {', '.join(TRACKING_SCHEMES)}")
    if scheme in ("http", "https"):
        port = parsed.port or (443 if scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
                pass
        except OSError as exc:
            raise TrackingError(f"tracking URI {uri}: the MLflow server does not answer ({exc})") from None
    elif scheme == "sqlite":
        folder = Path(uri.split(":///", 1)[-1]).parent
        if not folder.is_dir():
            raise TrackingError(f"tracking URI {uri}: folder {folder} does not exist")


def _local_store(uri: str | None) -> bool:
    """Whether a tracking URI is a file or SQLite store (no server with an artifact store of its own)."""
    return uri is None or uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _open_store(mlflow, tracking_uri: str, db: Path | None):
    """A client on ``tracking_uri``, checked by a first query. The run folder's own SQLite file (``db``)
    that cannot be opened — a migration cut short by an interrupt or a full disk, a corrupt file — is set
    aside (renamed, never deleted) and a fresh one started; returns (client, what was set aside or None)."""
    mlflow.set_tracking_uri(tracking_uri)
    try:
        client = mlflow.MlflowClient()
        client.search_experiments(max_results=1)
        return client, None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, MLflow and OS errors all mean "unusable store"
        if db is None or not db.exists():
            raise TrackingError(
                f"MLflow store {tracking_uri}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None
        aside = db.with_name(f"{db.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
        _forget_engine(tracking_uri)  # its pooled connections would still read the file set aside
        db.rename(aside)
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        client.search_experiments(max_results=1)
        return client, aside


def _forget_engine(uri: str) -> None:
    """Drop MLflow's cached SQLAlchemy engine for ``uri`` (MLflow keeps one per URI for the process)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engines = getattr(SqlAlchemyStore, "_engine_map", {})
    engine = engines.pop(uri, None)
    if engine is not None:
        engine.dispose()


def _experiment(mlflow, folder: Path, uri: str | None, experiment: str):
    """(client, experiment id, store set aside or None) for a run logged from ``folder``: its own SQLite
    file unless ``uri`` names a store (``_open_store``), artifacts kept in ``folder/mlartifacts`` for a
    file or SQLite store (else the server's own store), and an experiment whose store still points at the
    artifacts of a folder that was moved or copied renamed aside and made again here."""
    folder = folder.resolve()
    own = uri is None
    client, aside = _open_store(
        mlflow, uri or f"sqlite:///{folder / 'mlflow.db'}", folder / "mlflow.db" if own else None
    )
    location = (folder / "mlartifacts").as_uri() if _local_store(uri) else None
    exp = client.get_experiment_by_name(experiment)
    if exp is not None and own and location and exp.artifact_location != location:
        client.rename_experiment(exp.experiment_id, f"{experiment} (artifacts at {exp.artifact_location})")
        exp = None
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment, artifact_location=location)
    return client, exp_id, aside


def _log_run(
    out: Path, protocol, metrics: dict[str, float], artifacts: list[Path], uri: str | None, experiment: str
) -> str:
    import mlflow  # takes seconds to import: only when logging

    client, exp_id, aside = _experiment(mlflow, Path(out), uri, experiment)
    h = protocol.content_hash
    for old in client.search_runs([exp_id], filter_string=f"tags.protocol_hash = '{h}'"):
        if old.info.status != "FINISHED":  # an invocation cut short in this step: replaced, not left half made
            client.delete_run(old.info.run_id)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{protocol.name}-{h}") as run:
        mlflow.set_tags(
            {
                "protocol_hash": h,
                "seed": str(protocol.seed),
                "vtrial.protocol": protocol.name,
                **({"vtrial.store_set_aside": str(aside)} if aside else {}),
            }
        )
        params = {_safe_key(k): v for k, v in flatten(protocol.to_dict()).items()}
        params["protocol_hash"] = h
        items = list(params.items())
        for i in range(0, len(items), 90):  # MLflow caps a batch at 100 params
            mlflow.log_params(dict(items[i : i + 90]))
        finite = {_safe_key(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite)
        for path in artifacts:
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path=Path(path).name)
            elif Path(path).exists():
                mlflow.log_artifact(str(path))
        return run.info.run_id


def log_training(
    checkpoint: Path,
    config: dict,
    history: dict[str, float],
    tracking_dir: Path,
    uri: str | None = None,
    experiment: str = "vtrial-train",
) -> str:
    """Log a world-model training as one MLflow run (its config, history and checkpoint); default store
    a SQLite file in ``tracking_dir``. Returns the run id."""
    with _own_tracking_uri():
        import mlflow  # takes seconds to import: only when logging

        Path(tracking_dir).mkdir(parents=True, exist_ok=True)
        _, exp_id, _ = _experiment(mlflow, Path(tracking_dir), uri, experiment)
        with mlflow.start_run(experiment_id=exp_id, run_name=Path(checkpoint).stem) as run:
            mlflow.log_params({k: str(v) for k, v in config.items()})
            mlflow.log_metrics({k: float(v) for k, v in history.items() if math.isfinite(v)})
            mlflow.log_artifact(str(checkpoint))
            return run.info.run_id
