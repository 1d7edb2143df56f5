"""The command line: version, the built-in drugs and examples, and one hash for a trial from validate and run."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from vtrial.cli import app
from vtrial.data import example_protocol, package_version
from vtrial.spec.drugs import known_drugs


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"vtrial {package_version()}"
    assert package_version()[0].isdigit()


def test_drugs_lists_each_with_its_channels_pk_kinetics_and_sources():
    res = invoke("drugs")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for name in known_drugs():
        assert f"{name}: " in text  # its sources line
    assert "hERG 4.87" in text  # dofetilide's CiPA IC50
    assert "Li Z et al" in text and "ke0" in text
    assert invoke("drugs", "--herg-model", "fast").exit_code == 2


def test_examples_list_and_print():
    res = invoke("examples")
    assert res.exit_code == 0 and res.output.split() == ["cipa_training", "fda_ecgrdvq", "quickstart"]
    res = invoke("examples", "quickstart")
    assert yaml.safe_load(res.output) == yaml.safe_load(example_protocol("quickstart").read_text())
    bad = invoke("examples", "nosuch")
    assert bad.exit_code == 2 and "no example protocol 'nosuch'" in bad.output


def test_validate_accepts_an_example_name_and_names_missing_data():
    res = invoke("validate", "quickstart")
    assert res.exit_code == 0 and "'quickstart', 3 arms, 50 patients" in " ".join(res.output.split())
    res = invoke("validate", "fda_ecgrdvq", "--data", "/nonexistent")
    assert res.exit_code == 2 and "cohort.table: file not found: ecgrdvq/SCR-002.Clinical.Data.csv" in " ".join(
        res.output.split()
    )


@pytest.mark.slow
def test_validate_and_run_give_one_hash_for_a_table_cohort(tmp_path, write_table):
    """A table cohort's size is filled in by loading it; the hash does not change with that (nor with --replicas)."""
    (tmp_path / "data").mkdir()
    table = write_table(tmp_path / "data" / "t.csv")
    protocol = {
        "name": "hash",
        "seed": 3,
        "cohort": {"table": "t.csv"},
        "arms": [{"name": "placebo", "placebo": True}],
        "schedule": {"times_h": [0.0, 1.0]},
        "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(protocol))
    res = invoke("validate", path, "--data", table.parent)
    assert res.exit_code == 0, res.output
    shown = res.output.split("hash ")[-1].strip()
    res = invoke("run", path, "--data", table.parent, "--out", tmp_path / "run", "--quiet", "--replicas", "1")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["protocol_hash"] == shown and len(shown) == 16
