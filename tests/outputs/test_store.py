"""The Parquet store: parts written whole, checked before a resume, kept beats beside them."""

import numpy as np

from vtrial.outputs import store


def test_resume_check_drops_short_and_unreadable_parts(tmp_path):
    rows = {"arm_idx": np.zeros(4, np.int32), "patient": np.arange(4, dtype=np.int32), "x": np.ones(4)}
    for i in range(3):
        store.write_part(tmp_path, i, rows, ["placebo"], "h", 1)
    store.part_path(tmp_path, 1).write_bytes(b"PAR1 torn")
    stray = store.part_path(tmp_path, 3).with_suffix(".tmp")
    stray.write_bytes(b"half")
    dropped = store.drop_bad_parts(tmp_path, {0: 4, 1: 4, 2: 5})
    assert dropped == [1, 2]  # 1 unreadable, 2 has 4 rows where its batch has 5
    assert store.done_parts(tmp_path) == {0} and not stray.exists()
