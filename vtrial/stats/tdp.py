"""TdP risk category (CiPA: 2 high, 1 intermediate, 0 low) from ΔΔQTcF and ΔΔJ-Tpeak_c at multiples of
the free Cmax.

Features of a drug: at each multiple m of its free Cmax (an arm giving the drug alone at a fixed
exposure), the mean over post-dose times of the arm's ΔΔQTcF and ΔΔJ-Tpeak_c. The classifier is
deliberately small, because it is fitted on 12 drugs: one feature (ΔΔQTcF or ΔΔJ-Tpeak_c) at one
multiple, and two thresholds (low | intermediate | high), chosen to maximise the training accuracy (ties:
the widest margin, then the order of ``FEATURES`` and of the multiples). Leave-one-drug-out accuracy
refits the whole choice — feature, multiple and thresholds — without the drug it then predicts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

FEATURES = ("ddqtcf_ms", "ddjtpeakc_ms")
CATEGORY_NAMES = {0: "low", 1: "intermediate", 2: "high"}
DEFAULT_CLASSIFIER = Path(__file__).resolve().parent / "data" / "tdp_classifier.json"


@dataclass(frozen=True)
class TdpClassifier:
    feature: str
    multiple: float
    low_ms: float  # below: low risk
    high_ms: float  # at or above: high risk
    train_accuracy: float
    drugs: tuple[str, ...] = ()
    sampler: str | None = None
    herg_model: str | None = None  # how the training drugs blocked hERG (provenance)

    def predict(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, float)
        out = np.where(v >= self.high_ms, 2, np.where(v >= self.low_ms, 1, 0)).astype(float)
        out[~np.isfinite(v)] = np.nan
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({**asdict(self), "drugs": list(self.drugs)}, indent=1) + "\n")
        return path

    @staticmethod
    def load(path: str | Path = DEFAULT_CLASSIFIER) -> TdpClassifier:
        d = json.loads(Path(path).read_text())
        return TdpClassifier(**{**d, "drugs": tuple(d.get("drugs", ()))})


def drug_features(arms: pl.DataFrame, arm_exposure: dict[int, tuple[str, float]]) -> pl.DataFrame:
    """Long table (drug, multiple, ddqtcf_ms, ddjtpeakc_ms) from the arm table; ``arm_exposure``: arm_idx
    → (drug, multiple of free Cmax) for arms that give one drug at a fixed multiple."""
    rows = []
    post = arms.filter(pl.col("time_idx") > 0)
    for arm_idx, (drug, multiple) in arm_exposure.items():
        a = post.filter(pl.col("arm_idx") == arm_idx)
        rows.append(
            {
                "drug": drug,
                "multiple": float(multiple),
                **{f: (float(a[f].mean()) if a[f].is_not_null().any() else None) for f in FEATURES},
            }
        )
    return pl.DataFrame(
        rows, schema={"drug": pl.Utf8, "multiple": pl.Float64, "ddqtcf_ms": pl.Float64, "ddjtpeakc_ms": pl.Float64}
    )


def _matrix(features: pl.DataFrame, feature: str, multiple: float, drugs: list[str]) -> np.ndarray:
    f = features.filter(pl.col("multiple") == multiple)
    lookup = dict(zip(f["drug"].to_list(), f[feature].to_list()))
    return np.array([np.nan if lookup.get(d) is None else lookup[d] for d in drugs], float)


def _best_thresholds(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int, float]:
    """Thresholds (low, high) maximising correct counts; then the smallest-gap margin is maximised."""
    xs = np.unique(x)
    cuts = np.concatenate([[xs[0] - 1.0], (xs[1:] + xs[:-1]) / 2, [xs[-1] + 1.0]])
    best = (-1, -np.inf, 0.0, 0.0)
    for i, lo in enumerate(cuts):
        for hi in cuts[i:]:
            pred = np.where(x >= hi, 2, np.where(x >= lo, 1, 0))
            correct = int(np.sum(pred == y))
            margin = min(np.min(np.abs(x - lo)), np.min(np.abs(x - hi)))
            if (correct, margin) > best[:2]:
                best = (correct, margin, lo, hi)
    return best[2], best[3], best[0], best[1]


def fit_classifier(
    features: pl.DataFrame, categories: dict[str, int], sampler: str | None = None, herg_model: str | None = None
) -> TdpClassifier:
    """Choose feature, multiple and thresholds on the drugs of ``categories`` present in ``features``."""
    drugs = sorted(d for d in set(features["drug"].to_list()) if d in categories)
    if len({categories[d] for d in drugs}) < 2:
        raise ValueError(f"need drugs of at least two TdP categories to fit thresholds; have {drugs}")
    y = np.array([categories[d] for d in drugs])
    multiples = sorted(set(features["multiple"].to_list()))
    best, key = None, None
    for feature in FEATURES:
        for m in multiples:
            x = _matrix(features, feature, m, drugs)
            if not np.isfinite(x).all():
                continue  # every training drug needs this feature at this multiple
            lo, hi, correct, margin = _best_thresholds(x, y)
            if key is None or (correct, margin) > key:
                key, best = (correct, margin), (feature, m, lo, hi, correct / len(drugs))
    if best is None:
        raise ValueError("no multiple of free Cmax at which every training drug has both features")
    return TdpClassifier(
        best[0], best[1], float(best[2]), float(best[3]), float(best[4]), tuple(drugs), sampler, herg_model
    )


def predict_drugs(clf: TdpClassifier, features: pl.DataFrame) -> dict[str, float]:
    """drug → predicted category (NaN where the run lacks the classifier's multiple)."""
    drugs = sorted(set(features["drug"].to_list()))
    pred = clf.predict(_matrix(features, clf.feature, clf.multiple, drugs))
    return dict(zip(drugs, pred))


def leave_one_drug_out(features: pl.DataFrame, categories: dict[str, int]) -> dict[str, float]:
    """drug → its category predicted by a classifier fitted without it."""
    drugs = sorted(d for d in set(features["drug"].to_list()) if d in categories)
    out = {}
    for d in drugs:
        rest = features.filter(pl.col("drug") != d)
        try:
            clf = fit_classifier(rest, {k: v for k, v in categories.items() if k != d})
        except ValueError:
            out[d] = np.nan
            continue
        out[d] = predict_drugs(clf, features.filter(pl.col("drug") == d)).get(d, np.nan)
    return out


def tdp_table(
    features: pl.DataFrame,
    categories: dict[str, int],
    score_at_1x: dict[str, float],
    clf: TdpClassifier | None,
    sampler: str | None = None,
    herg_model: str | None = None,
) -> tuple[pl.DataFrame, dict, TdpClassifier | None]:
    """Per drug: known and predicted category (by the classifier fitted on this run's training drugs when
    it has ≥ 2 categories, else by ``clf``), leave-one-drug-out prediction, features. Metrics:
    ``tdp_lodo_accuracy`` and ``tdp_rank_spearman`` (S(a) at 1× free Cmax vs the known category)."""
    known = {d: c for d, c in categories.items() if d in set(features["drug"].to_list())}
    metrics, lodo = {}, {}
    if len(set(known.values())) >= 2 and len(known) >= 4:
        clf = fit_classifier(features, known, sampler, herg_model)
        lodo = leave_one_drug_out(features, known)
        ok = [d for d in known if np.isfinite(lodo.get(d, np.nan))]
        metrics["tdp_lodo_accuracy"] = float(np.mean([lodo[d] == known[d] for d in ok])) if ok else np.nan
        metrics["tdp_lodo_correct"] = float(sum(lodo[d] == known[d] for d in ok))
        metrics["tdp_lodo_drugs"] = float(len(ok))
        metrics["tdp_train_accuracy"] = clf.train_accuracy
        s = [(score_at_1x[d], known[d]) for d in known if score_at_1x.get(d) is not None]
        if len(s) >= 3:
            metrics["tdp_rank_spearman"] = float(stats.spearmanr(*zip(*s)).statistic)
    pred = predict_drugs(clf, features) if clf is not None else {}
    rows = []
    for d in sorted(set(features["drug"].to_list())):
        p = pred.get(d, np.nan)
        row = {
            "drug": d,
            "known": categories.get(d),
            "predicted": None if not np.isfinite(p) else int(p),
            "lodo_predicted": None if not np.isfinite(lodo.get(d, np.nan)) else int(lodo[d]),
            "score_at_1x_ms": score_at_1x.get(d),
        }
        for r in features.filter(pl.col("drug") == d).sort("multiple").iter_rows(named=True):
            for f in FEATURES:
                row[f"{f}_at_{r['multiple']:g}x"] = r[f]
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None), metrics, clf
