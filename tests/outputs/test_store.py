"""The Parquet store: parts written whole, checked before a resume, kept beats beside them."""

import numpy as np
import pytest

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


def test_kept_beats_are_written_beside_their_part_and_read_in_order(tmp_path):
    rows = {
        "arm_idx": np.array([1, 0], np.int32),
        "patient": np.zeros(2, np.int32),
        "time_idx": np.array([0, 0], np.int32),
        "time_h": np.zeros(2),
        "sample": np.zeros(2, np.int32),
    }
    beats = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    assert store.read_beats(tmp_path) is None
    path = store.write_beats_part(tmp_path, 4, rows, beats, 250.0, ["placebo", "drug"])
    assert path == store.beats_part_path(tmp_path, 4) and not list(path.parent.glob("*.tmp"))
    got = store.read_beats(tmp_path)
    assert got["arm"].to_list() == ["placebo", "drug"]  # sorted by arm index
    assert got["beat_mv"].to_list()[0] == pytest.approx([0.4, 0.5, 0.6]) and got["fs_hz"][0] == 250.0


def test_a_dropped_part_takes_its_beats_with_it(tmp_path):
    rows = {
        "arm_idx": np.zeros(2, np.int32),
        "patient": np.zeros(2, np.int32),
        "time_idx": np.zeros(2, np.int32),
        "time_h": np.zeros(2),
        "sample": np.arange(2, dtype=np.int32),
    }
    store.write_beats_part(tmp_path, 0, rows, np.zeros((2, 3), np.float32), 500.0, ["placebo"])
    store.write_part(tmp_path, 0, {k: rows[k] for k in ("arm_idx", "patient")}, ["placebo"], "h", 1)
    assert store.drop_bad_parts(tmp_path, {0: 3}) == [0]  # wrong row count
    assert not store.beats_part_path(tmp_path, 0).exists() and store.read_beats(tmp_path) is None


def test_a_part_whose_bytes_changed_is_found_and_redone(tmp_path):
    """A flipped bit mid-file still reads (footer intact) and gave silently different values; its checksum
    does not match, so a resume redoes it and report names it."""
    rows = {"arm_idx": np.zeros(64, np.int32), "patient": np.arange(64, dtype=np.int32), "x": np.linspace(0, 1, 64)}
    for i in range(2):
        store.write_part(tmp_path, i, rows, ["placebo"], "h", 1)
    path = store.part_path(tmp_path, 1)
    assert store.checksum_path(path).exists() and store.part_intact(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01  # one bit, inside the column data
    path.write_bytes(bytes(data))
    assert not store.part_intact(path) and store.damaged_parts(tmp_path) == [path]
    assert store.drop_bad_parts(tmp_path, {0: 64, 1: 64}) == [1]
    assert store.done_parts(tmp_path) == {0} and not store.checksum_path(path).exists()
