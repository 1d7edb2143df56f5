"""MLflow tracking: protocols flatten into params, keys are made safe, and a run's store never leaks."""

import os

import mlflow

from vtrial.outputs.tracking import ENV, MAX_PARAM_CHARS, _safe_key, flatten, log_training


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
