"""WFDB cohorts: records become patients; bad records are skipped with their reasons (or stop a --strict run)."""

import json
import shutil

import numpy as np
import pytest
import wfdb

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.waves import Waves
from vtrial.sources.wfdb_cohort import RecordError, cohort_from_wfdb
from vtrial.spec.protocol import parse_protocol
from vtrial.trial import RunError, run_trial

# --- clinical tables -------------------------------------------------------------------------------


# --- WFDB folders ----------------------------------------------------------------------------------


def strip_mv(seconds=20.0, fs=360, rr_s=0.9, seed=0):
    """A periodic ECGSYN lead-II strip with a little noise."""
    w = Waves.typical(1, rr_s)
    beat = ecgsyn_beat(w.to_ecgsyn(), fs, (-0.4, -0.4 + rr_s))[0].numpy()
    x = np.tile(beat, int(seconds / rr_s) + 1)[: int(seconds * fs)]
    return x + 0.005 * np.random.default_rng(seed).standard_normal(len(x))


def write_record(folder, name, signals, names=("II", "V5"), fs=360, fmt="16"):
    sig = np.stack(signals, axis=1)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * sig.shape[1],
        sig_name=list(names),
        p_signal=sig,
        fmt=[fmt] * sig.shape[1],
        write_dir=str(folder),
        comments=["age: 52", "sex: female"],
    )


@pytest.fixture(scope="module")
def wfdb_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("wfdb")
    good = strip_mv()
    write_record(d, "good", [good, 0.5 * good])
    write_record(d, "flat", [np.zeros_like(good) + 0.001 * np.sin(np.arange(len(good))), good])
    write_record(d, "saturated", [np.clip(3 * good, -0.2, 0.2), good])
    write_record(d, "short", [good[: 360 * 2], good[: 360 * 2]])
    write_record(d, "nolead", [good, good], names=("V1", "V2"))
    write_record(d, "truncated", [good, good])
    dat = d / "truncated.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    write_record(d, "nodat", [good, good])
    (d / "nodat.dat").unlink()
    (d / "corrupt.hea").write_text("this is not a header\n")
    write_record(d, "fastfs", [good, good], fs=1e9)  # once failed the whole cohort with "Singular matrix"
    (d / "multi.hea").write_text("multi/2 2 360 14400\ngood 7200\ngood 7200\n")  # once an AttributeError
    return d


def test_wfdb_folder_loads_the_good_record_and_names_each_bad_one(wfdb_folder, measured):
    cohort, report = cohort_from_wfdb(wfdb_folder, seed=0)
    assert cohort.size == 1 and report["records"][0]["record"] == "good"
    reasons = {s["record"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"flat", "saturated", "short", "nolead", "truncated", "nodat", "corrupt", "fastfs", "multi"}
    assert reasons["fastfs"].startswith("sampling rate 1000000000") and reasons["multi"].startswith("a multi-segment")
    assert reasons["flat"].startswith("flat lead")
    assert reasons["saturated"].startswith("saturated lead")
    assert reasons["short"].startswith("too few beats")
    assert reasons["nolead"].startswith("no lead 'II'")
    assert reasons["truncated"].startswith("signal file truncated")
    assert reasons["nodat"].startswith("signal file missing")
    assert reasons["corrupt"].startswith("unreadable header")
    assert cohort.sex[0] == "F" and cohort.age_y[0] == 52  # from the header's comments
    # the patient's beat measures as the record's median beat
    rec = report["records"][0]
    m = measured(cohort)
    for col in ("qt_ms", "qrs_ms", "tpte_ms"):
        assert abs(m[col][0] - rec[col]) < 10, col
    assert abs(rec["rr_ms"] - 900) < 5


def test_strict_makes_a_bad_record_an_error(wfdb_folder, tmp_path):
    with pytest.raises(RecordError, match=r"corrupt: unreadable header"):
        cohort_from_wfdb(wfdb_folder, seed=0, strict=True)
    only_good = tmp_path / "g"
    only_good.mkdir()
    for f in wfdb_folder.glob("good.*"):
        shutil.copy(f, only_good)
    assert cohort_from_wfdb(only_good, seed=0, strict=True)[0].size == 1


def test_the_shared_records_both_load(shared_data, measured):
    cohort, report = cohort_from_wfdb(shared_data / "wfdb", seed=0)
    assert report["skipped"] == [] and cohort.size == 2
    used = {r["record"]: r["lead_used"] for r in report["records"]}
    assert used == {"100": "MLII", "s0010_re": "ii"}  # MIT-BIH's modified lead II stands for II
    m = measured(cohort)
    for rec, qt in zip(report["records"], m["qt_ms"]):
        assert abs(qt - rec["qt_ms"]) < 10 and 350 < qt < 600


# --- protocols and runs ----------------------------------------------------------------------------


def test_a_run_on_a_wfdb_folder_reports_its_cohort(wfdb_folder, tmp_path, real_run):
    p = parse_protocol({**real_run, "cohort": {"wfdb": str(wfdb_folder)}})
    res = run_trial(p, out=tmp_path / "run", progress=False, track=False)
    assert res.patients["patient"].n_unique() == 1  # every usable record of the folder
    assert res.samples()["patient"].unique().to_list() == [0]
    report = json.loads((tmp_path / "run" / "cohort_report.json").read_text())
    assert report["patients"] == 1 and len(report["skipped"]) == 9
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert any(w.startswith("cohort: skipped corrupt: unreadable header") for w in info["warnings"])
    # the same protocol resumes onto the same trial (the filled-in size gives the same hash)
    again = run_trial(p, out=tmp_path / "run", resume=True, progress=False, track=False)
    assert again.protocol.content_hash == res.protocol.content_hash
    with pytest.raises(RunError, match="cohort: .*corrupt: unreadable header"):
        run_trial(p, out=tmp_path / "strict", progress=False, track=False, strict=True)
    assert not (tmp_path / "strict").exists()
