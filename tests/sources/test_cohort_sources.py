"""Real-data cohorts: clinical tables and WFDB folders become virtual patients whose baseline beats
measure as the subjects' own; bad records are skipped with their reasons (or stop a --strict run)."""
import copy
import json
import shutil

import numpy as np
import polars as pl
import pytest
import wfdb

from vtrial.sources.table_cohort import cohort_from_table
from vtrial.sources.wfdb_cohort import FIT_FS_HZ, WINDOW_S, RecordError, cohort_from_wfdb
from vtrial.trial import RunError, check_protocol, run_trial
from vtrial.signal.measure import measure
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.waves import Waves
from vtrial.spec.protocol import ProtocolError, parse_protocol


def measured(cohort, fs_hz=FIT_FS_HZ):
    w = cohort.waves
    return measure(ecgsyn_beat(w.to_ecgsyn(), fs_hz, WINDOW_S), fs_hz, w.rr_s.numpy() * 1000, window_start_s=WINDOW_S[0])


# --- clinical tables -------------------------------------------------------------------------------

SUBJECTS = {  # subject: (sex, age, weight, RR, PR, QRS, J-Tpeak, Tpeak-Tend) of the pre-dose ECGs
    101: ("F", 30, 61.0, 950.0, 150.0, 92.0, 230.0, 75.0),
    102: ("M", 41, 82.0, 1100.0, 170.0, 104.0, 215.0, 80.0),
    103: ("M", 25, 70.0, 1000.0, 160.0, 96.0, None, 78.0),  # J-Tpeak NA in every baseline ECG
}


def write_table(path, subjects=SUBJECTS, drop=()):
    rows = []
    for sid, (sex, age, wt, rr, pr, qrs, jtp, tpte) in subjects.items():
        for rep, bump in enumerate((-2.0, 0.0, 2.0)):  # triplicate pre-dose ECGs
            rows.append({"EGREFID": f"{sid}-{rep}", "RANDID": sid, "SEX": sex, "AGE": age, "WGHT": wt,
                         "EXTRT": "Placebo", "EXDOSE": 0, "EXDOSU": "mg", "TPT": -0.5, "BASELINE": "Y",
                         "PCSTRESN": None, "PCSTRESU": "ng/mL", "RR": rr + bump, "PR": pr, "QRS": qrs,
                         "QT": None if jtp is None else qrs + jtp + tpte, "JTPEAK": jtp, "TPEAKTEND": tpte})
        rows.append({**rows[-1], "EGREFID": f"{sid}-post", "TPT": 2.0, "BASELINE": "N", "RR": 600.0, "QRS": 200.0})
    df = pl.DataFrame(rows, infer_schema_length=None).drop(list(drop))
    df.write_csv(path, null_value="NA")
    return path


def test_table_cohort_gives_each_subject_their_own_baseline(tmp_path):
    cohort, report = cohort_from_table(write_table(tmp_path / "t.csv"), seed=1)
    assert cohort.size == 2 and report["subjects"] == [101, 102]
    assert report["skipped"] == [{"subject": 103, "reason": "no usable pre-dose jtpeak_ms"}]
    assert list(cohort.sex) == ["F", "M"] and list(cohort.age_y) == [30, 41] and list(cohort.weight_kg) == [61, 82]
    m = measured(cohort, 1000)
    # the mean of the pre-dose ECGs (post-dose rows ignored), measured on the patient's own beat
    np.testing.assert_allclose(m["rr_ms"], [950, 1100], atol=1e-6)
    np.testing.assert_allclose(m["qrs_ms"], [92, 104], atol=2)
    np.testing.assert_allclose(m["jtpeak_ms"], [230, 215], atol=2)
    np.testing.assert_allclose(m["tpte_ms"], [75, 80], atol=2)
    np.testing.assert_allclose(m["pr_ms"], [150, 170], atol=3)
    np.testing.assert_allclose(m["qt_ms"], [397, 399], atol=3)
    assert report["qt_fit_error_ms_max"] < 3


def test_table_cohort_size_and_missing_columns(tmp_path):
    path = write_table(tmp_path / "t.csv")
    assert cohort_from_table(path, 1, size=1)[0].size == 1
    with pytest.raises(ValueError, match="cohort.size = 3 but the table has 2 usable subjects"):
        cohort_from_table(path, 1, size=3)
    with pytest.raises(ValueError, match=r"missing columns JTPEAK, TPEAKTEND"):
        cohort_from_table(write_table(tmp_path / "bad.csv", drop=("JTPEAK", "TPEAKTEND")), 1)


def test_the_fda_study_table_makes_22_patients(shared_data):
    cohort, report = cohort_from_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv", seed=0)
    assert cohort.size == 22 and report["skipped"] == []
    assert report["table_quirks"]["pr_wrapped_32bit"] == 2 and report["table_quirks"]["qt_missing"] == 13
    assert report["qt_fit_error_ms_max"] < 3
    m = measured(cohort)
    assert np.all((m["qtcf_ms"] > 350) & (m["qtcf_ms"] < 460))


# --- WFDB folders ----------------------------------------------------------------------------------

def strip_mv(seconds=20.0, fs=360, rr_s=0.9, seed=0):
    """A periodic ECGSYN lead-II strip with a little noise."""
    w = Waves.typical(1, rr_s)
    beat = ecgsyn_beat(w.to_ecgsyn(), fs, (-0.4, -0.4 + rr_s))[0].numpy()
    x = np.tile(beat, int(seconds / rr_s) + 1)[: int(seconds * fs)]
    return x + 0.005 * np.random.default_rng(seed).standard_normal(len(x))


def write_record(folder, name, signals, names=("II", "V5"), fs=360, fmt="16"):
    sig = np.stack(signals, axis=1)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * sig.shape[1], sig_name=list(names), p_signal=sig,
                fmt=[fmt] * sig.shape[1], write_dir=str(folder), comments=["age: 52", "sex: female"])


@pytest.fixture(scope="module")
def wfdb_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("wfdb")
    good = strip_mv()
    write_record(d, "good", [good, 0.5 * good])
    write_record(d, "flat", [np.zeros_like(good) + 0.001 * np.sin(np.arange(len(good))), good])
    write_record(d, "saturated", [np.clip(3 * good, -0.2, 0.2), good])
    write_record(d, "short", [good[:360 * 2], good[:360 * 2]])
    write_record(d, "nolead", [good, good], names=("V1", "V2"))
    write_record(d, "truncated", [good, good])
    dat = d / "truncated.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    write_record(d, "nodat", [good, good])
    (d / "nodat.dat").unlink()
    (d / "corrupt.hea").write_text("this is not a header\n")
    return d


def test_wfdb_folder_loads_the_good_record_and_names_each_bad_one(wfdb_folder):
    cohort, report = cohort_from_wfdb(wfdb_folder, seed=0)
    assert cohort.size == 1 and report["records"][0]["record"] == "good"
    reasons = {s["record"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"flat", "saturated", "short", "nolead", "truncated", "nodat", "corrupt"}
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


def test_the_shared_records_both_load(shared_data):
    cohort, report = cohort_from_wfdb(shared_data / "wfdb", seed=0)
    assert report["skipped"] == [] and cohort.size == 2
    used = {r["record"]: r["lead_used"] for r in report["records"]}
    assert used == {"100": "MLII", "s0010_re": "ii"}  # MIT-BIH's modified lead II stands for II
    m = measured(cohort)
    for rec, qt in zip(report["records"], m["qt_ms"]):
        assert abs(qt - rec["qt_ms"]) < 10 and 350 < qt < 600


# --- protocols and runs ----------------------------------------------------------------------------

RUN = {
    "name": "real-cohort", "seed": 2,
    "arms": [{"name": "placebo", "placebo": True},
             {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "exposure": {"multiple_of_free_cmax": 1.0}}]}],
    "schedule": {"times_h": [0.0, 2.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
    "compute": {"replicas": 1},
}


def test_protocol_cohort_sources_are_checked(tmp_path):
    table = write_table(tmp_path / "t.csv")
    ok = check_protocol(parse_protocol({**RUN, "cohort": {"table": "t.csv"}}), base_dir=tmp_path)
    assert ok.cohort.source == "table" and ok.cohort.size is None
    assert parse_protocol({**RUN, "cohort": {"size": 4}}).cohort.population == "healthy_adults"
    cases = [({"table": str(table), "population": "healthy_adults"}, "give one cohort source, not population and table"),
             ({"population": "healthy_adults"}, "size: required for a population cohort"),
             ({"table": "nowhere.csv"}, "cohort.table: file not found: nowhere.csv"),
             ({"wfdb": "no/such/folder"}, "cohort.wfdb: folder not found"),
             ({"table": str(table), "lead": "V1"}, "lead: only a wfdb cohort")]
    for cohort, message in cases:
        with pytest.raises(ProtocolError) as err:
            check_protocol(parse_protocol({**RUN, "cohort": cohort}), base_dir=tmp_path)
        assert any(message in p for p in err.value.problems), (cohort, err.value.problems)


def test_a_run_on_a_wfdb_folder_reports_its_cohort(wfdb_folder, tmp_path):
    p = parse_protocol({**copy.deepcopy(RUN), "cohort": {"wfdb": str(wfdb_folder)}})
    res = run_trial(p, out=tmp_path / "run", progress=False, track=False)
    assert res.patients["patient"].n_unique() == 1  # every usable record of the folder
    assert res.samples()["patient"].unique().to_list() == [0]
    report = json.loads((tmp_path / "run" / "cohort_report.json").read_text())
    assert report["patients"] == 1 and len(report["skipped"]) == 7
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert any(w.startswith("cohort: skipped corrupt: unreadable header") for w in info["warnings"])
    # the same protocol resumes onto the same trial (the filled-in size gives the same hash)
    again = run_trial(p, out=tmp_path / "run", resume=True, progress=False, track=False)
    assert again.protocol.content_hash == res.protocol.content_hash
    with pytest.raises(RunError, match="cohort: .*corrupt: unreadable header"):
        run_trial(p, out=tmp_path / "strict", progress=False, track=False, strict=True)
    assert not (tmp_path / "strict").exists()
