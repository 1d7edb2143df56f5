"""Compare two run folders' samples (and the report's example beats) bit for bit: the check that a
refactor kept behaviour. Prints one JSON object on its last line.

    python benchmarks/compare_runs.py RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

KEY = ["arm_idx", "patient", "time_idx", "sample"]


def _samples(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "samples.parquet" / "*.parquet").sort(KEY)


def _beats(run: Path) -> pl.DataFrame | None:
    path = run / "beats.parquet"
    if not path.exists():
        return None
    return pl.read_parquet(path / "*.parquet" if path.is_dir() else path).sort(KEY)


def compare(a: Path, b: Path) -> dict:
    sa, sb = _samples(a), _samples(b)
    same_cols = [c for c in sa.columns if c in sb.columns and c != "protocol_hash"]
    out = {
        "rows": [sa.height, sb.height],
        "columns_compared": same_cols,
        "columns_only_in_one": sorted(set(sa.columns) ^ set(sb.columns)),
        "samples_identical": sa.height == sb.height
        and sa.select(same_cols).equals(sb.select(same_cols), null_equal=True),
    }
    ba, bb = _beats(a), _beats(b)
    if ba is not None and bb is not None:
        joined = ba.join(bb, on=KEY, suffix="_b")  # the beats both runs kept
        same = all(
            np.array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
            for x, y in zip(joined["beat_mv"].to_list(), joined["beat_mv_b"].to_list())
        )
        out["beats_compared"] = joined.height
        out["beats_in_each"] = [ba.height, bb.height]
        out["beats_identical"] = bool(same) and joined.height == min(ba.height, bb.height)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    print(json.dumps(compare(args.run_a, args.run_b)))


if __name__ == "__main__":
    main()
