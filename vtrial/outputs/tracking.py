"""MLflow tracking of a trial: one run with the flattened protocol, its hash, headline metrics and the
tables as artifacts. Default store: a SQLite file under the output folder (``sqlite:///OUT/mlflow.db``),
artifacts under ``OUT/mlartifacts``; a tracking URI is an option (the protocol's ``tracking.uri``, or
``vtrial run --tracking-uri`` / ``MLFLOW_TRACKING_URI`` when the protocol names none).
"""

from __future__ import annotations

import contextlib
import math
import os
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


def _log_run(
    out: Path, protocol, metrics: dict[str, float], artifacts: list[Path], uri: str | None, experiment: str
) -> str:
    import mlflow  # takes seconds to import: only when logging

    out = Path(out).resolve()
    tracking_uri = uri or f"sqlite:///{out / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None if uri else (out / "mlartifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{protocol.name}-{protocol.content_hash}") as run:
        mlflow.set_tags(
            {"protocol_hash": protocol.content_hash, "seed": str(protocol.seed), "vtrial.protocol": protocol.name}
        )
        params = {_safe_key(k): v for k, v in flatten(protocol.to_dict()).items()}
        params["protocol_hash"] = protocol.content_hash
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

        out_dir = Path(tracking_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri or f"sqlite:///{out_dir / 'mlflow.db'}")
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        exp_id = (
            exp.experiment_id
            if exp
            else client.create_experiment(
                experiment, artifact_location=None if uri else (out_dir / "mlartifacts").as_uri()
            )
        )
        with mlflow.start_run(experiment_id=exp_id, run_name=Path(checkpoint).stem) as run:
            mlflow.log_params({k: str(v) for k, v in config.items()})
            mlflow.log_metrics({k: float(v) for k, v in history.items() if math.isfinite(v)})
            mlflow.log_artifact(str(checkpoint))
            return run.info.run_id
