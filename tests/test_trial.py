"""The engine end to end on embedded Ray: identical tables whatever the replicas, resume, refusals."""

import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vtrial.outputs import store
from vtrial.outputs.report import example_beats
from vtrial.signal.measure import measure
from vtrial.spec.protocol import parse_protocol
from vtrial.trial import RunError, run_trial

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "seed": 7,
    "cohort": {"population": "healthy_adults", "size": 6},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
    ],
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
    for name in (
        "samples.parquet",
        "patients.parquet",
        "arms.parquet",
        "summary.parquet",
        "comparisons.parquet",
        "cqtc.parquet",
        "beats.parquet",
        "report.html",
        "protocol.resolved.yaml",
        "ddqtcf_time_course.png",
        "cqtc.png",
        "patient_risk.png",
        "beats.png",
    ):
        assert (out / name).exists(), name
    arms = pl.read_parquet(out / "arms.parquet")
    dof = arms.filter((pl.col("arm") == "dofetilide") & (pl.col("time_h") == 2.5)).row(0, named=True)
    assert dof["ddqtcf_ms"] > 20 and dof["ddqtcf_ms_ci90_lo"] < dof["ddqtcf_ms"] < dof["ddqtcf_ms_ci90_hi"]
    plc = arms.filter(pl.col("arm") == "placebo")
    assert plc["ddqtcf_ms"].is_null().all() and plc["dd_absent_reason"][0].startswith("placebo arm")
    assert '<img src="data:image/png;base64,' in (out / "report.html").read_text()
    summary = pl.read_parquet(out / "summary.parquet")
    dof_s = summary.filter(pl.col("arm") == "dofetilide").row(0, named=True)
    assert dof_s["e14_negative"] is False and dof_s["rank"] == 1 and dof_s["score_ms"] > dof_s["mu_r_ms"]
    cq = pl.read_parquet(out / "cqtc.parquet").row(0, named=True)
    assert cq["drug"] == "dofetilide" and cq["status"] == "ok" and cq["slope_ms_per_nM"] > 0
    kept = store.read_beats(out)  # the replicas kept every unit of patient 0: 2 arms × 4 times × S = 4
    assert kept.height == 2 * 4 * 4 and set(kept["patient"]) == {0}
    beats = example_beats(kept, summary)
    assert set(beats["arm"]) == {"placebo", "dofetilide"} and beats.height == 2 * 2 * 4  # baseline + peak, S = 4
    # the example beats are the very samples in the tables: the beats the replica measured

    b = beats.filter((pl.col("arm") == "dofetilide") & (pl.col("time_idx") > 0)).sort("sample")
    t_idx = b["time_idx"][0]
    s = one.samples().filter((pl.col("arm") == "dofetilide") & (pl.col("patient") == 0) & (pl.col("time_idx") == t_idx))
    s = s.sort("sample")
    m = measure(np.stack(b["beat_mv"].to_list()), float(b["fs_hz"][0]), s["rr_ms"].to_numpy(), window_start_s=-0.4)
    np.testing.assert_array_equal(m["qtcf_ms"].astype(np.float32), s["qtcf_ms"].to_numpy())


def test_report_command_regenerates_tables_and_report(two_runs, tmp_path):
    from typer.testing import CliRunner

    from vtrial.cli import app

    base, one, _ = two_runs
    copy_dir = tmp_path / "copy"
    shutil.copytree(base / "one", copy_dir)
    for name in ("report.html", "comparisons.parquet", "cqtc.png"):
        (copy_dir / name).unlink()
    res = CliRunner().invoke(app, ["report", str(copy_dir)])
    assert res.exit_code == 0, res.output
    for name in ("report.html", "comparisons.parquet", "cqtc.png"):
        assert (copy_dir / name).exists()
    assert pl.read_parquet(copy_dir / "summary.parquet").equals(pl.read_parquet(base / "one" / "summary.parquet"))
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "not a vtrial run folder" in " ".join(bad.output.split())


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
    assert (res.arms["dd_absent_reason"] == "no placebo arm in the protocol").all()
    assert res.summary["endpoint"].to_list() == ["dqtcf_ms"]
    info = json.loads((tmp_path / "noplc" / "run_info.json").read_text())
    assert any("placebo-corrected endpoints (ΔΔ) are absent" in w for w in info["warnings"])


def test_gpus_requested_on_a_cluster_without_gpus_fails_clearly(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(RunError, match=r"compute.gpus_per_replica = 1.0 but the Ray cluster has 0 GPUs"):
        run_trial(
            protocol(compute={"replicas": 1, "gpus_per_replica": 1}), out=tmp_path / "gpu", progress=False, track=False
        )
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "gpu").exists()  # a refused run leaves nothing behind


def test_more_cpus_than_the_cluster_has_fails_clearly(tmp_path):
    with pytest.raises(RunError, match=r"needs 64 CPUs; the cluster has"):
        run_trial(
            protocol(compute={"replicas": 2, "cpus_per_replica": 32}), out=tmp_path / "cpu", progress=False, track=False
        )


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


def test_fixed_exposure_drugs_get_tdp_categories_logged_to_mlflow(tmp_path):
    import mlflow

    drugs = ["dofetilide", "bepridil", "chlorpromazine", "ondansetron", "verapamil", "diltiazem"]
    arms = [{"name": "placebo", "placebo": True}] + [
        {"name": f"{d}_{m}x", "drugs": [{"drug": d, "exposure": {"multiple_of_free_cmax": m}}]}
        for d in drugs
        for m in (1, 4)
    ]
    p = protocol(
        arms=arms,
        cohort={"population": "healthy_adults", "size": 4},
        schedule={"times_h": [-0.5, 1.0]},
        sampling={"samples_per_patient": 2, "sampler": "mechanistic"},
        compute={"replicas": 1, "batch_size": 64},
    )
    res = run_trial(p, out=tmp_path / "tdp", progress=False, track=True)
    tdp = pl.read_parquet(tmp_path / "tdp" / "tdp.parquet")
    assert sorted(tdp["drug"]) == sorted(drugs)
    assert tdp["known"].to_list() == [2, 1, 0, 2, 1, 0]  # alphabetical: bepridil … verapamil
    assert tdp["predicted"].is_not_null().all() and tdp["lodo_predicted"].is_not_null().all()
    assert (tmp_path / "tdp" / "tdp_map.png").exists()
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'tdp' / 'mlflow.db').resolve()}")
    metrics = mlflow.get_run(res.run_id).data.metrics
    lodo = metrics["tdp_lodo_accuracy"]
    assert lodo == pytest.approx(float(np.mean(tdp["lodo_predicted"].to_numpy() == tdp["known"].to_numpy())))
    assert -1 <= metrics["tdp_rank_spearman"] <= 1


def test_resume_on_a_fresh_folder_runs_everything(tmp_path):
    # what a resubmitted cluster job relies on (deploy/kuberay/rayjob.yaml always passes --resume)
    res = run_trial(protocol(), out=tmp_path / "fresh", resume=True, progress=False, track=False)
    info = json.loads((tmp_path / "fresh" / "run_info.json").read_text())
    assert info["batches_run"] == info["batches"] > 0
    assert res.samples().height == 2 * 6 * 4 * 4


@pytest.fixture
def ray_once():
    """One loopback Ray for a test's several run_trial calls (each would start and stop its own)."""
    import ray

    from vtrial.engine.cluster import start_local_ray

    if not ray.is_initialized():
        start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_a_damaged_part_is_named_by_report_and_redone_by_resume(two_runs, tmp_path, ray_once):
    from typer.testing import CliRunner

    from vtrial.cli import app

    base, one, _ = two_runs
    copy_dir = tmp_path / "copy"
    shutil.copytree(base / "one", copy_dir)
    part = store.part_path(copy_dir, 0)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x10
    part.write_bytes(bytes(data))
    res = CliRunner().invoke(app, ["report", str(copy_dir)])
    said = " ".join(res.output.split())
    assert res.exit_code == 1 and "part-000000.parquet" in said and "--resume" in said
    again = run_trial(protocol(), out=copy_dir, resume=True, progress=False, track=False)
    assert again.samples().equals(one.samples())
    assert any("part 0 was unreadable" in e for e in json.loads((copy_dir / "run_info.json").read_text())["events"])


def test_a_tracking_server_that_does_not_answer_stops_the_run_before_sampling(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(RunError, match="does not answer.*Nothing was run"):
        run_trial(protocol(), out=tmp_path / "t", progress=False, tracking_uri=f"http://127.0.0.1:{closed}")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "t").exists()


def test_an_interrupt_in_the_mlflow_step_resumes_to_one_finished_run(tmp_path, monkeypatch, ray_once):
    """Ctrl-C while the run's artifacts are logged left a store --resume could never finish."""
    import mlflow

    real = mlflow.log_artifacts
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_artifacts", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_trial(protocol(), out=out, progress=False, track=True)
    assert not (out / ".vtrial.lock").exists()  # released on the way out
    res = run_trial(protocol(), out=out, resume=True, progress=False, track=True)
    mlflow.set_tracking_uri(f"sqlite:///{(out / 'mlflow.db').resolve()}")
    exp = mlflow.MlflowClient().get_experiment_by_name("tiny")
    runs = mlflow.MlflowClient().search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"] and runs[0].info.run_id == res.run_id
    assert json.loads((out / "run_info.json").read_text())["batches_run"] == 0  # nothing was resampled


def test_a_trial_that_cannot_fit_in_memory_is_refused_before_anything_is_built(tmp_path):
    from vtrial.trial import check_memory, driver_memory_bytes

    huge = protocol(cohort={"population": "healthy_adults", "size": 10**9})
    t0 = time.monotonic()
    with pytest.raises(RunError, match=r"cohort.size = 1,000,000,000 needs about [\d,.]+ GiB .*Lower cohort.size"):
        run_trial(huge, out=tmp_path / "huge", progress=False, track=False)
    assert time.monotonic() - t0 < 5 and not (tmp_path / "huge").exists()
    small = protocol()
    check_memory(small)  # the tiny trial fits anywhere
    assert driver_memory_bytes(small, 2000) == 2 * driver_memory_bytes(small, 1000)
    with pytest.raises(RunError, match=r"about 1[,.]?\d* fit"):
        check_memory(
            protocol(cohort={"population": "healthy_adults", "size": 10}),
            available_bytes=1.25 * driver_memory_bytes(small, 1),
        )
