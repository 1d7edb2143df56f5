"""The FDA study table: quirks handled and counted, the summary reproduced, calibration targets met."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vtrial.sources.study_table import load_clinical_table, placebo_corrected

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table(shared_data):
    return load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")


def test_quirks_are_handled_and_counted(table):
    df, report = table
    assert report["pr_wrapped_32bit"] == 2 and report["qt_missing"] == 13
    assert report["conc_pg_per_ml_converted"] == 990
    assert df["pr_ms"].min() > 0 and df["pr_ms"].max() < 400
    assert sorted(
        df.filter(pl.col("pr_ms").is_in([345.0, 324.0]) & (pl.col("subject") == 1007))["pr_ms"].to_list()
    ) == [324.0, 345.0]
    assert df.filter(pl.col("treatment") == "dofetilide")["dose_mg"].unique().to_list() == [0.5]


def test_summary_reproduces_the_shared_ddqtcf(table, shared_data):
    df, _ = table
    ours = placebo_corrected(df, columns=("qtcf_ms",))
    ref = pl.read_csv(shared_data / "ecgrdvq" / "ddQTcF_by_treatment_timepoint.csv")
    names = {
        "Dofetilide": "dofetilide",
        "Quinidine Sulph": "quinidine",
        "Ranolazine": "ranolazine",
        "Verapamil HCL": "verapamil",
        "Placebo": "placebo",
    }
    ref = ref.with_columns(pl.col("treatment").replace_strict(names))
    joined = ref.join(ours, left_on=["treatment", "tpt_h"], right_on=["treatment", "time_h"])
    assert joined.height == ref.height
    np.testing.assert_allclose(joined["dd_qtcf_ms"], joined["mean_ddQTcF_ms"], atol=0.01)


def test_missing_columns_are_named(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("RANDID,SEX\n1,F\n")
    with pytest.raises(ValueError, match=r"missing columns AGE, WGHT, EXTRT"):
        load_clinical_table(bad)


def test_shipped_calibration_meets_its_targets(shared_data):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calibration_ecgrdvq.py"), "--data", str(shared_data)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(abs(v) <= 10.0 for v in result["peak_ddqtcf_error_ms"].values()), result
    assert result["jtpeak_finding_reproduced"]


HEADER = (
    "EGREFID,RANDID,SEX,AGE,WGHT,EXTRT,EXDOSE,EXDOSU,TPT,BASELINE,PCSTRESN,PCSTRESU,RR,PR,QRS,QT,JTPEAK,TPEAKTEND\n"
)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (bytes(range(256)) * 8, r"not UTF-8 text \(byte 0x80 on line 2\)"),
        (HEADER.encode(), "no rows under the header"),
        (
            (HEADER + "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r\n").encode(),
            r"column RANDID holds a value that is not a number: 'b' \(line 2\)",
        ),
        (
            (HEADER + "1,101,F,30,60,Placebo,0,mg,-0.5,Y,NA,ng/mL,fast,150,90,400,230,75\n").encode(),
            r"column RR holds .* 'fast'",
        ),
    ],
    ids=["empty", "binary", "header only", "junk ids", "junk interval"],
)
def test_a_table_that_cannot_be_read_is_named_not_a_traceback(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_clinical_table(path)
