"""Paths from outside stay inside their folder: '..', absolute, hidden, odd and linked-out names are refused."""

import pytest

from vtrial.spec.paths import RefusedName, check_relative, dest_path


def test_every_write_is_proven_inside_dest(tmp_path):
    assert dest_path(tmp_path, "a/b.dat") == (tmp_path / "a" / "b.dat").resolve()
    (tmp_path / "link").symlink_to("/tmp")
    for bad in ("../x", "a/../../x", "/abs", "link/x.dat", ".hidden", "a\\\\b", "C:/x"):
        with pytest.raises(RefusedName):
            dest_path(tmp_path, bad)
    assert check_relative("1001/rec1") == "1001/rec1"
    with pytest.raises(RefusedName, match="hidden"):
        check_relative("a/.ssh/x")
