"""MLflow tracking: protocols flatten into params, keys are made safe, and a run's store never leaks."""

import os
import shutil

import mlflow
import pytest

from vtrial.outputs.tracking import ENV, MAX_PARAM_CHARS, TrackingError, _safe_key, flatten, log_run, log_training
from vtrial.spec.protocol import parse_protocol


def test_flatten_nests_with_dots_and_indices_and_caps_values():
    d = {"a": {"b": 1, "c": [1, 2]}, "arms": [{"name": "x"}, {"name": "y"}], "long": "z" * 900}
    flat = flatten(d)
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]"
    assert flat["arms[0].name"] == "x" and flat["arms[1].name"] == "y"
    assert len(flat["long"]) == MAX_PARAM_CHARS
    assert _safe_key("arms[0].name$") == "arms_0_.name_"


def test_a_training_is_logged_to_a_file_store_and_the_environment_is_restored(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    run_id = log_training(ckpt, {"lr": 0.001, "steps": 10}, {"final_loss": 0.5, "nan": float("nan")}, tmp_path / "t")
    assert ENV not in os.environ
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 't' / 'mlflow.db').resolve()}")
    run = mlflow.get_run(run_id)
    assert run.data.params == {"lr": "0.001", "steps": "10"} and run.data.metrics == {"final_loss": 0.5}
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)] == ["m.pt"]
    assert (tmp_path / "t" / "mlartifacts").is_dir()  # artifacts beside the store, not in ./mlruns


P = {
    "name": "track",
    "seed": 1,
    "cohort": {"size": 2},
    "arms": [{"name": "placebo", "placebo": True}],
    "schedule": {"times_h": [0, 1]},
    "sampling": {"samples_per_patient": 2},
}


def _runs(out):
    mlflow.set_tracking_uri(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("vtrial")
    return exp, client.search_runs([exp.experiment_id], run_view_type=mlflow.entities.ViewType.ACTIVE_ONLY)


def test_the_mlflow_step_can_always_be_finished(tmp_path, monkeypatch):
    """A store cut short mid-migration is set aside, a half-made run is replaced, and a moved run folder's
    artifacts go to the folder it is in now."""
    monkeypatch.delenv(ENV, raising=False)
    p = parse_protocol(P)
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.html").write_text("<html></html>")
    log_run(out, p, {"m": 1.0}, [out / "report.html"])
    exp, runs = _runs(out)
    assert exp.artifact_location == (out / "mlartifacts").resolve().as_uri() and len(runs) == 1

    # an invocation interrupted inside the MLflow step left a RUNNING run: a resume replaces it
    mlflow.set_tracking_uri(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    mlflow.MlflowClient().create_run(exp.experiment_id, tags={"protocol_hash": p.content_hash})
    log_run(out, p, {"m": 2.0}, [out / "report.html"])
    _, runs = _runs(out)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"] and len(runs) == 2

    # the folder moved: its store still names the old folder; the new run's artifacts land in the new one
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    log_run(moved, p, {"m": 3.0}, [moved / "report.html"])
    exp, runs = _runs(moved)
    assert exp.artifact_location == (moved / "mlartifacts").resolve().as_uri()
    assert any((moved / "mlartifacts").rglob("report.html")) and not out.exists()

    # a store that cannot be opened (a migration cut short, a torn file) is set aside, never deleted (a
    # folder this process has not opened yet: MLflow keeps an open store per URI for the process)
    torn = tmp_path / "torn"
    shutil.copytree(moved, torn)
    (torn / "mlflow.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    run_id = log_run(torn, p, {"m": 4.0}, [torn / "report.html"])
    aside = list(torn.glob("mlflow.db.unusable-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"SQLite format 3")
    mlflow.set_tracking_uri(f"sqlite:///{(torn / 'mlflow.db').resolve()}")
    assert mlflow.get_run(run_id).data.tags["vtrial.store_set_aside"] == str(aside[0])


def test_a_tracking_uri_keeps_the_artifacts_in_the_run_folder_not_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.html").write_text("x")
    log_run(out, parse_protocol(P), {}, [out / "report.html"], uri=f"sqlite:///{tmp_path / 'shared.db'}")
    assert not (tmp_path / "mlruns").exists() and any((out / "mlartifacts").rglob("report.html"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database")
    with pytest.raises(TrackingError, match=r"MLflow store sqlite:///.*bad.db"):
        log_run(out, parse_protocol(P), {}, [], uri=f"sqlite:///{bad}")
    assert bad.read_bytes() == b"not a database"  # a store vtrial does not own is never touched


def test_a_tracking_uri_is_checked_before_any_work(tmp_path):
    import socket

    from vtrial.outputs.tracking import check_tracking

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(TrackingError, match="the MLflow server does not answer"):
        check_tracking(f"http://127.0.0.1:{closed}")
    with pytest.raises(TrackingError, match="unknown kind 'gopher'"):
        check_tracking("gopher://x")
    with pytest.raises(TrackingError, match="does not exist"):
        check_tracking(f"sqlite:///{tmp_path}/no/such/mlflow.db")
    check_tracking(None)
    check_tracking(f"sqlite:///{tmp_path}/mlflow.db")
