"""TdP categories: thresholds on one feature at one multiple, leave-one-drug-out refits everything."""

import numpy as np
import polars as pl
import pytest

from vtrial.stats.tdp import TdpClassifier, fit_classifier, leave_one_drug_out, predict_drugs, tdp_table


def features(values: dict[str, tuple[float, float]], multiples=(1.0, 4.0), noise_at_4x=True):
    rows = []
    for d, (q, j) in values.items():
        rows.append({"drug": d, "multiple": 1.0, "ddqtcf_ms": q, "ddjtpeakc_ms": j})
        # at 4x the features carry no information (the classifier must pick the 1x column)
        rows.append(
            {
                "drug": d,
                "multiple": 4.0,
                "ddqtcf_ms": 50.0 + (ord(d[0]) % 7 if noise_at_4x else 0),
                "ddjtpeakc_ms": 20.0,
            }
        )
    return pl.DataFrame(rows)


SEPARABLE = {
    "a": (-5, -8),
    "b": (2, -3),
    "c": (4, -1),
    "d": (15, 6),
    "e": (22, 9),
    "f": (25, 12),
    "g": (60, 30),
    "h": (75, 35),
    "i": (90, 40),
}
CATS = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 1, "g": 2, "h": 2, "i": 2}


def test_separable_drugs_are_classified_and_lodo_is_perfect():
    f = features(SEPARABLE)
    clf = fit_classifier(f, CATS)
    assert clf.multiple == 1.0 and clf.train_accuracy == 1.0
    assert 4 < clf.low_ms < 15 and 25 < clf.high_ms < 60
    pred = predict_drugs(clf, f)
    assert all(pred[d] == c for d, c in CATS.items())
    lodo = leave_one_drug_out(f, CATS)
    assert all(lodo[d] == c for d, c in CATS.items())


def test_lodo_exposes_a_drug_the_others_cannot_place():
    vals = dict(SEPARABLE, j=(80, 38))  # looks high risk, is low: no honest classifier gets it right
    cats = dict(CATS, j=0)
    table, metrics, _ = tdp_table(features(vals), cats, {d: v[0] for d, v in vals.items()}, None)
    assert table.filter(pl.col("drug") == "j")["lodo_predicted"][0] == 2
    assert metrics["tdp_lodo_correct"] <= 9 and metrics["tdp_lodo_drugs"] == 10
    assert metrics["tdp_lodo_accuracy"] == pytest.approx(metrics["tdp_lodo_correct"] / 10)
    assert 0 < metrics["tdp_rank_spearman"] < 1


def test_classifier_round_trips_and_predicts_missing_as_nan(tmp_path):
    clf = fit_classifier(features(SEPARABLE), CATS, sampler="mechanistic")
    again = TdpClassifier.load(clf.save(tmp_path / "c.json"))
    assert again == clf
    assert np.isnan(again.predict(np.array([np.nan]))[0])
    only_4x = features(SEPARABLE).filter(pl.col("multiple") == 4.0)
    assert all(np.isnan(v) for v in predict_drugs(clf, only_4x).values())


def test_one_category_is_refused():
    with pytest.raises(ValueError, match="two TdP categories"):
        fit_classifier(features(SEPARABLE), {d: 1 for d in SEPARABLE})
