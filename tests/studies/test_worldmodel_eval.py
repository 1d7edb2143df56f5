"""The world model's evaluation: held-out pairs, with and without the prior, paired."""

import numpy as np
import pytest


def test_eval_writes_the_layout_with_a_paired_prior_comparison(tiny, tmp_path):
    import json

    from typer.testing import CliRunner

    from vtrial.cli import app
    from vtrial.studies.worldmodel_eval import METRICS, paired_difference

    _, _, path = tiny
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(path),
            "--ablation",
            str(path),
            "--out",
            str(tmp_path),
            "--pairs",
            "12",
            "--samples",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "eval.json").read_text())
    for block in (r["heldout"]["prior"], r["heldout"]["ablation"], r["heldout"]["mechanistic"], r["train"]):
        assert set(METRICS) <= set(block)
        assert 0.0 <= block["coverage90"] <= 1.0 and 0.0 <= block["hallucination_rate"] <= 1.0
    diff = r["prior_minus_ablation"]["dqtcf_mae_ms"]
    # the mean of the per-pair differences is the difference of the two MAEs
    assert diff["mean"] == pytest.approx(
        r["heldout"]["prior"]["dqtcf_mae_ms"] - r["heldout"]["ablation"]["dqtcf_mae_ms"], abs=1e-4
    )
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    same = paired_difference(np.arange(5.0), np.arange(5.0), seed=0)
    assert same == {"mean": 0.0, "ci95": [0.0, 0.0]}
