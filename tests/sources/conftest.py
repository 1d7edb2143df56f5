"""Helpers shared by the cohort-source tests: a clinical table in the FDA study's layout, the intervals
a cohort's baseline beats measure, and a small protocol around a real-data cohort."""
import polars as pl
import pytest

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.signal.measure import measure
from vtrial.sources.wfdb_cohort import FIT_FS_HZ, WINDOW_S

SUBJECTS = {  # subject: (sex, age, weight, RR, PR, QRS, J-Tpeak, Tpeak-Tend) of the pre-dose ECGs
    101: ("F", 30, 61.0, 950.0, 150.0, 92.0, 230.0, 75.0),
    102: ("M", 41, 82.0, 1100.0, 170.0, 104.0, 215.0, 80.0),
    103: ("M", 25, 70.0, 1000.0, 160.0, 96.0, None, 78.0),  # J-Tpeak NA in every baseline ECG
}


def _write_table(path, subjects=SUBJECTS, drop=()):
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


def _measured(cohort, fs_hz=FIT_FS_HZ):
    w = cohort.waves
    return measure(ecgsyn_beat(w.to_ecgsyn(), fs_hz, WINDOW_S), fs_hz, w.rr_s.numpy() * 1000, window_start_s=WINDOW_S[0])


_RUN = {
    "name": "real-cohort", "seed": 2,
    "arms": [{"name": "placebo", "placebo": True},
             {"name": "dofetilide", "drugs": [{"drug": "dofetilide", "exposure": {"multiple_of_free_cmax": 1.0}}]}],
    "schedule": {"times_h": [0.0, 2.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
    "compute": {"replicas": 1},
}


@pytest.fixture
def write_table():
    """write_table(path, subjects=SUBJECTS, drop=()) → path of a clinical table."""
    return _write_table


@pytest.fixture
def measured():
    """measured(cohort, fs_hz) → the measured intervals of each patient's baseline beat."""
    return _measured


@pytest.fixture
def real_run():
    """A two-arm protocol mapping without its cohort section."""
    import copy

    return copy.deepcopy(_RUN)
