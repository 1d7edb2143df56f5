"""A run folder holds one trial: refusals that change nothing, and a run record that keeps every invocation."""

import json

import pytest

from vtrial.outputs.run_folder import (
    COHORT_REPORT,
    RESOLVED,
    RunFolderError,
    check_output,
    read_resolved,
    record_output,
    write_run_info,
)
from vtrial.spec.protocol import parse_protocol

P = {
    "name": "f",
    "seed": 1,
    "cohort": {"size": 2},
    "arms": [{"name": "placebo", "placebo": True}],
    "schedule": {"times_h": [0, 1]},
    "sampling": {"samples_per_patient": 2},
}


def test_a_folder_takes_one_trial(tmp_path):
    p = parse_protocol(P)
    check_output(tmp_path / "new", p, resume=False)  # absent: fine, nothing made
    assert not (tmp_path / "new").exists()
    paths = record_output(tmp_path / "run", p, {"source": "population", "patients": 2})
    assert [x.name for x in paths] == [RESOLVED, COHORT_REPORT]
    assert read_resolved(tmp_path / "run").content_hash == p.content_hash
    with pytest.raises(RunFolderError, match="already holds this trial .*use --resume"):
        check_output(tmp_path / "run", p, resume=False)
    check_output(tmp_path / "run", p, resume=True)
    other = parse_protocol({**P, "seed": 2})
    with pytest.raises(RunFolderError, match="already holds a different trial"):
        check_output(tmp_path / "run", other, resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty and holds no vtrial run"):
        check_output(tmp_path / "junk", p, resume=False)
    assert (tmp_path / "junk" / "x.txt").read_text() == "mine"


def test_run_info_keeps_earlier_invocations(tmp_path):
    write_run_info(tmp_path, {"batches_run": 3}, {"sampling_s": 1.0})
    path = write_run_info(tmp_path, {"batches_run": 1, "events": ["resume"]}, {"sampling_s": 0.5})
    info = json.loads(path.read_text())
    assert [i["batches_run"] for i in info["invocations"]] == [3, 1]
    assert info["invocations"][1]["events"] == ["resume"] and info["batches_run"] == 1
    path.write_text("{torn")  # a record cut by a crash: this invocation starts a new one
    assert len(json.loads(write_run_info(tmp_path, {}, {}).read_text())["invocations"]) == 1
