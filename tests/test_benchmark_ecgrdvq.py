"""The FDA study as a held-out benchmark: the replica protocol, and `vtrial benchmark ecgrdvq` out of fold
(a reduced run: two folds, a short fit, the mechanistic sampler; the full figures are in the README)."""
import copy
import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from vtrial.benchmark_ecgrdvq import split_subjects
from vtrial.cli import app
from vtrial.engine import run_trial
from vtrial.protocol import parse_protocol

ROOT = Path(__file__).resolve().parents[1]
DRUG_KEYS = {"peak_ddqtcf_error_ms", "rmse_ddqtcf_ms", "coverage90", "crps_ms", "lodo_peak_ddqtcf_error_ms", "cqtc"}


def test_split_covers_every_subject_once():
    groups = split_subjects(range(1001, 1023), 4)
    flat = [s for g in groups for s in g]
    assert sorted(flat) == list(range(1001, 1023)) and len(set(flat)) == 22
    assert [len(g) for g in groups] == [6, 6, 5, 5]
    assert groups == split_subjects(range(1001, 1023), 4)  # fixed seed


def test_replica_protocol_runs_the_22_subjects(shared_data, tmp_path):
    d = yaml.safe_load((ROOT / "protocols" / "fda_ecgrdvq.yaml").read_text())
    p = parse_protocol(d, base_dir=ROOT / "protocols")
    assert [a.name for a in p.arms][0] == "placebo" and len(p.arms) == 5 and len(p.schedule.times_h) == 16
    small = copy.deepcopy(d)
    small["sampling"] = {"samples_per_patient": 2, "sampler": "mechanistic"}
    small["compute"] = {"replicas": 1, "batch_size": 512}
    res = run_trial(parse_protocol(small, base_dir=ROOT / "protocols"), out=tmp_path / "fda", progress=False,
                    track=False, base_dir=ROOT / "protocols")
    assert res.protocol.cohort.size == 22
    peak = {r["arm"]: r["peak_ms"] for r in res.summary.iter_rows(named=True) if r["peak_ms"] is not None}
    assert peak["dofetilide_500ug"] > 30 and peak["quinidine_sulphate_400mg"] > 30  # the study: 79 and 79 ms
    assert peak["verapamil_120mg"] < 15  # the study: 5 ms


def test_benchmark_layout_out_of_fold(shared_data, tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "ecgrdvq", "--data", str(shared_data), "--out", str(tmp_path),
                                   "--folds", "2", "--samples", "20", "--max-nfev", "3", "--draws", "2",
                                   "--sampler", "mechanistic"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "ecgrdvq.json").read_text())
    assert set(r["drugs"]) == {"dofetilide", "quinidine", "ranolazine", "verapamil"}
    for v in r["drugs"].values():
        assert DRUG_KEYS <= set(v) and set(v["cqtc"]) == {"peak_ddqtcf_error_ms", "rmse_ddqtcf_ms", "coverage90", "crps_ms"}
        assert 0 <= v["coverage90"] <= 1 and v["crps_ms"] > 0 and v["lodo_peak_ddqtcf_error_ms"] is not None
    assert r["out_of_fold"] is True
    tests = [s for f in r["settings"]["folds_detail"] for s in f["test_subjects"]]
    assert sorted(tests) == sorted(set(tests)) and len(tests) == 22  # every subject predicted once
    assert (tmp_path / "ecgrdvq_ddqtcf.png").stat().st_size > 10_000


def test_benchmark_names_a_missing_table(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "ecgrdvq", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "SCR-002.Clinical.Data.csv not found" in res.output
