"""Finding a protocol's cohort data: every missing file or folder is named with where it was looked for."""

import pytest

from vtrial.spec.protocol import ProtocolError, parse_protocol
from vtrial.trial import check_protocol


def test_protocol_cohort_sources_are_checked(tmp_path, write_table, real_run):
    table = write_table(tmp_path / "t.csv")
    ok = check_protocol(parse_protocol({**real_run, "cohort": {"table": "t.csv"}}), base_dir=tmp_path)
    assert ok.cohort.source == "table" and ok.cohort.size is None
    assert parse_protocol({**real_run, "cohort": {"size": 4}}).cohort.population == "healthy_adults"
    cases = [
        ({"table": str(table), "population": "healthy_adults"}, "give one cohort source, not population and table"),
        ({"population": "healthy_adults"}, "size: required for a population cohort"),
        ({"table": "nowhere.csv"}, "cohort.table: file not found: nowhere.csv"),
        ({"wfdb": "no/such/folder"}, "cohort.wfdb: folder not found"),
        ({"table": str(table), "lead": "V1"}, "lead: only a wfdb cohort"),
    ]
    for cohort, message in cases:
        with pytest.raises(ProtocolError) as err:
            check_protocol(parse_protocol({**real_run, "cohort": cohort}), base_dir=tmp_path)
        assert any(message in p for p in err.value.problems), (cohort, err.value.problems)
