"""A built wheel carries the populations, example protocols and shipped models, and runs a trial installed
into a fresh environment (outside the source tree, without the editable install)."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (path,) = out.glob("vtrial-*.whl")
    return path


def test_the_wheel_holds_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (
        "vtrial/data/cohorts/healthy_adults.yaml",
        "vtrial/data/protocols/quickstart.yaml",
        "vtrial/data/protocols/cipa_training.yaml",
        "vtrial/data/worldmodel.pt",
        "vtrial/data/drugs.json",
        "vtrial/data/herg_kinetics.json",
        "vtrial/data/epk_coefficients.json",
        "vtrial/data/ord_apd90.json",
        "vtrial/data/tdp_classifier.json",
        "vtrial/spec/protocol.py",
        "vtrial/engine/replica.py",
    ):
        assert f in names, f
    assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names)


@pytest.mark.slow
def test_the_installed_wheel_runs_the_quickstart_outside_the_source_tree(wheel, tmp_path):
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the wheel itself, unpacked as pip would; its dependencies come from this environment (a plain path
    # entry: the editable install's finder in this environment is not activated)
    zipfile.ZipFile(wheel).extractall(site)
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def vtrial(*args):
        code = "import sys; from vtrial.cli import app; sys.argv = ['vtrial', *sys.argv[1:]]; app()"
        return subprocess.run(
            [py, "-c", code, *map(str, args)], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [py, "-c", "import vtrial; print(vtrial.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), where  # the wheel's copy, not the source tree
    assert vtrial("validate", "quickstart").returncode == 0
    protocol = yaml.safe_load(vtrial("examples", "quickstart").stdout)
    protocol["cohort"]["size"] = 4
    protocol["sampling"]["samples_per_patient"] = 2
    protocol["compute"]["replicas"] = 1
    (work / "q.yaml").write_text(yaml.safe_dump(protocol))
    res = vtrial("run", "q.yaml", "--out", "runs/q", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ("samples.parquet", "summary.parquet", "report.html", "mlflow.db"):
        assert (work / "runs" / "q" / name).exists(), name
