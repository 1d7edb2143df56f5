"""Clinical-table cohorts: each subject becomes a patient whose baseline beat measures as their own."""

import numpy as np
import pytest

from vtrial.sources.table_cohort import cohort_from_table


def test_table_cohort_gives_each_subject_their_own_baseline(tmp_path, write_table, measured):
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


def test_table_cohort_size_and_missing_columns(tmp_path, write_table):
    path = write_table(tmp_path / "t.csv")
    assert cohort_from_table(path, 1, size=1)[0].size == 1
    with pytest.raises(ValueError, match="cohort.size = 3 but the table has 2 usable subjects"):
        cohort_from_table(path, 1, size=3)
    with pytest.raises(ValueError, match=r"missing columns JTPEAK, TPEAKTEND"):
        cohort_from_table(write_table(tmp_path / "bad.csv", drop=("JTPEAK", "TPEAKTEND")), 1)


def test_the_fda_study_table_makes_22_patients(shared_data, measured):
    cohort, report = cohort_from_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv", seed=0)
    assert cohort.size == 22 and report["skipped"] == []
    assert report["table_quirks"]["pr_wrapped_32bit"] == 2 and report["table_quirks"]["qt_missing"] == 13
    assert report["qt_fit_error_ms_max"] < 3
    m = measured(cohort)
    assert np.all((m["qtcf_ms"] > 350) & (m["qtcf_ms"] < 460))
