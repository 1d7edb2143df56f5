"""A run folder on a filesystem URI: parts mirrored as they are written, the finished run complete on the
URI, a resume that starts from the URI alone, and the usual refusals."""

import os
import shutil

import pytest

from vtrial.outputs import store
from vtrial.outputs.run_location import RunLocation
from vtrial.spec.protocol import parse_protocol
from vtrial.trial import RunError, run_trial

SMALL = {
    "name": "on-a-uri",
    "seed": 21,
    "cohort": {"population": "healthy_adults", "size": 4},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
    ],
    "schedule": {"times_h": [-0.5, 1.0, 3.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
    "compute": {"replicas": 1, "batch_size": 5},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("location")
    mp = pytest.MonkeyPatch()
    mp.setenv("VTRIAL_CACHE", str(base / "cache"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = parse_protocol(SMALL)
    local = run_trial(p, out=base / "local", progress=False, track=False)
    uri = (base / "shared" / "run").as_uri()  # file:///...: the pyarrow filesystem path, not Path
    remote = run_trial(p, out=uri, progress=False, track=True)
    yield base, p, local, remote, uri
    mp.undo()


def test_a_local_path_is_used_in_place(tmp_path):
    loc = RunLocation(tmp_path / "x")
    assert not loc.remote and loc.local == tmp_path / "x"
    loc.push_all()  # nothing to do
    assert not (tmp_path / "x").exists()


def test_the_run_is_complete_on_the_uri(runs):
    base, p, local, remote, uri = runs
    shared = base / "shared" / "run"
    assert remote.location == uri and remote.out != shared  # worked in a staging folder
    for name in (
        "protocol.resolved.yaml",
        "run_info.json",
        "patients.parquet",
        "arms.parquet",
        "summary.parquet",
        "report.html",
        "mlflow.db",
    ):
        assert (shared / name).is_file(), name
    assert sorted(p.name for p in (shared / "beats.parquet").iterdir()) == sorted(
        p.name for p in (local.out / "beats.parquet").iterdir()
    )  # the kept beats, part by part
    assert store.done_parts(shared) == store.done_parts(local.out)
    assert store.read_samples(shared).equals(local.samples())
    # MLflow exports the store it logged to; vtrial puts the environment back, so it cannot leak into later runs
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_resume_from_the_uri_alone(runs, tmp_path):
    base, p, local, remote, uri = runs
    copy = tmp_path / "copy"
    shutil.copytree(base / "shared" / "run", copy)
    parts = sorted((copy / store.SAMPLES).glob("part-*.parquet"))
    for part in parts[1::2]:
        part.unlink()
    (copy / "arms.parquet").unlink()
    staging = RunLocation(copy.as_uri()).local
    if staging.exists():
        shutil.rmtree(staging)  # a different machine: nothing staged
    res = run_trial(p, out=copy.as_uri(), resume=True, progress=False, track=False)
    import json

    info = json.loads((copy / "run_info.json").read_text())
    assert info["batches_run"] == len(parts[1::2])
    assert len(info["invocations"]) == 2  # the first run's record came back from the URI
    assert store.read_samples(copy).equals(local.samples())
    assert res.arms.equals(local.arms) and (copy / "arms.parquet").is_file()


def test_refusals_on_a_uri(runs, tmp_path):
    base, p, *_, uri = runs
    with pytest.raises(RunError, match=r"already holds this trial .*use --resume"):
        run_trial(p, out=uri, progress=False, track=False)
    with pytest.raises(RunError, match=r"already holds a different trial"):
        run_trial(p.replace(seed=1), out=uri, progress=False, track=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's")
    with pytest.raises(RunError, match=r"is not empty and holds no vtrial run"):
        run_trial(p, out=other.as_uri(), progress=False, track=False)
    assert sorted(x.name for x in other.iterdir()) == ["notes.txt"]
    with pytest.raises(RunError, match=r"nosuchfs://bucket/run"):
        run_trial(p, out="nosuchfs://bucket/run", progress=False, track=False)


def test_a_remote_key_that_climbs_out_of_the_staging_folder_is_refused(tmp_path, monkeypatch):
    base = tmp_path / "store"
    base.mkdir()
    loc = RunLocation(f"file://{base}/run")
    monkeypatch.setattr(loc, "_remote_files", lambda: ["samples.parquet/part-000000.parquet", "../../../evil.sh"])
    with pytest.raises(ValueError, match=r"holds a key vtrial will not fetch: file '\.\./\.\./\.\./evil\.sh'"):
        loc.pull()
    assert not (loc.local.parent.parent / "evil.sh").exists()
