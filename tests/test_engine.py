"""The engine end to end on embedded Ray: identical tables whatever the replicas, resume, refusals."""
import copy
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vtrial.engine import RunError, run_trial
from vtrial.protocol import parse_protocol

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny", "seed": 7,
    "cohort": {"population": "healthy_adults", "size": 6},
    "arms": [{"name": "placebo", "placebo": True},
             {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]}],
    "schedule": {"times_h": [-0.5, 1.0, 2.5, 6.0]},
    "sampling": {"samples_per_patient": 4, "sampler": "mechanistic"},
    "compute": {"replicas": 1, "batch_size": 7},
    "tracking": {"experiment": "tiny"},
}


def protocol(**changes):
    d = copy.deepcopy(TINY)
    d.update(changes)
    return parse_protocol(d)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("engine")
    p = protocol()
    one = run_trial(p, out=base / "one", replicas=1, progress=False, track=True)
    two = run_trial(p, out=base / "two", replicas=2, progress=False, track=False)
    return base, one, two


def test_same_seed_same_tables_with_one_and_two_replicas(two_runs):
    base, one, two = two_runs
    assert one.samples().equals(two.samples())
    assert one.patients.equals(two.patients)
    assert one.arms.equals(two.arms)
    s = one.samples()
    assert s.height == 2 * 6 * 4 * 4
    assert s["protocol_hash"].unique().to_list() == [one.protocol.content_hash]
    assert s["seed"].unique().to_list() == [7]


def test_tables_and_report_are_written(two_runs):
    base, one, _ = two_runs
    out = base / "one"
    for name in ("samples.parquet", "patients.parquet", "arms.parquet", "report.html", "protocol.resolved.yaml"):
        assert (out / name).exists(), name
    arms = pl.read_parquet(out / "arms.parquet")
    dof = arms.filter((pl.col("arm") == "dofetilide") & (pl.col("time_h") == 2.5)).row(0, named=True)
    assert dof["ddqtcf_ms"] > 20 and dof["ddqtcf_ms_ci90_lo"] < dof["ddqtcf_ms"] < dof["ddqtcf_ms_ci90_hi"]
    plc = arms.filter(pl.col("arm") == "placebo")
    assert np.allclose(plc["ddqtcf_ms"].to_numpy(), 0.0)
    assert "<img src=\"data:image/png;base64," in (out / "report.html").read_text()


def test_mlflow_run_holds_params_metrics_and_artifacts(two_runs):
    import mlflow

    base, one, _ = two_runs
    mlflow.set_tracking_uri(f"sqlite:///{(base / 'one' / 'mlflow.db').resolve()}")
    run = mlflow.get_run(one.run_id)
    assert run.data.params["protocol_hash"] == one.protocol.content_hash
    assert run.data.params["cohort.size"] == "6"
    assert "peak_ddqtcf_ms.dofetilide" in run.data.metrics
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(one.run_id)}
    assert {"arms.parquet", "patients.parquet", "report.html", "protocol.resolved.yaml", "samples.parquet"} <= names


def test_refuses_a_folder_holding_another_trial(two_runs):
    base, one, _ = two_runs
    before = sorted(p.name for p in (base / "one").iterdir())
    with pytest.raises(RunError, match=r"already holds a different trial .* Nothing was overwritten"):
        run_trial(protocol(seed=8), out=base / "one", progress=False, track=False)
    with pytest.raises(RunError, match=r"already holds this trial .*use --resume"):
        run_trial(protocol(), out=base / "one", progress=False, track=False)
    assert sorted(p.name for p in (base / "one").iterdir()) == before


def test_resume_finishes_only_what_is_missing(two_runs, tmp_path):
    base, one, _ = two_runs
    out = tmp_path / "resumed"
    shutil.copytree(base / "two", out)
    parts = sorted((out / "samples.parquet").glob("part-*.parquet"))
    for p in parts[::2]:
        p.unlink()
    for name in ("patients.parquet", "arms.parquet"):
        (out / name).unlink()
    res = run_trial(protocol(), out=out, resume=True, progress=False, track=False)
    import json

    info = json.loads((out / "run_info.json").read_text())
    assert info["batches_run"] == len(parts[::2])
    assert res.samples().equals(one.samples())
    assert res.arms.equals(one.arms)


def test_no_placebo_arm_reports_ddqtcf_as_absent(tmp_path):
    p = protocol(arms=[TINY["arms"][1]], cohort={"population": "healthy_adults", "size": 3})
    res = run_trial(p, out=tmp_path / "noplc", progress=False, track=False)
    assert res.arms["ddqtcf_ms"].is_null().all()
    assert res.summary["endpoint"].to_list() == ["dqtcf_ms"]


def test_gpus_requested_on_a_cluster_without_gpus_fails_clearly(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(RunError, match=r"compute.gpus_per_replica = 1.0 but the Ray cluster has 0 GPUs"):
        run_trial(protocol(compute={"replicas": 1, "gpus_per_replica": 1}), out=tmp_path / "gpu", progress=False, track=False)
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "gpu").exists()  # a refused run leaves nothing behind


def test_more_cpus_than_the_cluster_has_fails_clearly(tmp_path):
    with pytest.raises(RunError, match=r"needs 64 CPUs; the cluster has"):
        run_trial(protocol(compute={"replicas": 2, "cpus_per_replica": 32}), out=tmp_path / "cpu", progress=False, track=False)


def test_unreachable_address_fails_within_seconds(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(RunError, match=r"cannot reach the Ray cluster at 127.0.0.1:9"):
        run_trial(protocol(), out=tmp_path / "addr", address="127.0.0.1:9", progress=False, track=False)
    assert time.perf_counter() - t0 < 10


def test_worldmodel_sampler_runs_in_the_engine(tmp_path):
    """The default sampler, with the shipped checkpoint, through Ray; its samples are measured and flagged."""
    d = copy.deepcopy(TINY)
    d["sampling"] = {"samples_per_patient": 4}  # the default sampler: worldmodel
    d["cohort"]["size"] = 3
    p = parse_protocol(d)
    assert p.sampling.sampler == "worldmodel"
    res = run_trial(p, out=tmp_path / "wm", progress=False, track=False)
    s = res.samples()
    assert s.height == 2 * 3 * 4 * 4
    assert s["valid"].mean() > 0.9
    dof = res.arms.filter((pl.col("arm") == "dofetilide") & (pl.col("time_h") == 2.5))["ddqtcf_ms"][0]
    assert dof > 10  # the world model prolongs QTc under dofetilide
