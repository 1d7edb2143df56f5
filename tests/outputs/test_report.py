"""The report: the run's own beats at baseline and each arm's peak, names escaped, every figure embedded."""

import numpy as np
import polars as pl

from vtrial.outputs import store
from vtrial.outputs.report import FIGURES, example_beats, write_report
from vtrial.sampling.beats import sample_keeping
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sources.locate import load_cohort
from vtrial.spec.protocol import parse_protocol
from vtrial.spec.work_units import UnitPlan
from vtrial.stats.analysis import analyse

ARM = "<b>dof & co</b>"
TRIAL = {
    "name": "report <test>",
    "seed": 2,
    "cohort": {"size": 4},
    "arms": [
        {"name": "placebo", "placebo": True},
        {"name": ARM, "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]},
    ],
    "schedule": {"times_h": [-0.5, 1.0, 2.5, 8.0]},
    "sampling": {"samples_per_patient": 3, "sampler": "mechanistic"},
    "risk": {"bootstrap": 200},
}


def _run(tmp_path):
    p = parse_protocol(TRIAL)
    cohort, _ = load_cohort(p.cohort, p.seed)
    units = UnitPlan(p, cohort).all()
    smp = MechanisticSampler(3)
    keep = units["patient"] == 0
    rows, beats = sample_keeping(smp, units, p.seed, keep)
    names = [a.name for a in p.arms]
    store.write_part(tmp_path, 0, rows, names, p.content_hash, p.seed)
    ids = {k: np.repeat(units[k][keep], 3) for k in ("arm_idx", "patient", "time_idx", "time_h")}
    store.write_beats_part(
        tmp_path, 0, {**ids, "sample": np.tile(np.arange(3, dtype=np.int32), keep.sum())}, beats, smp.fs_hz, names
    )
    return p, analyse(p, store.scan_samples(tmp_path))


def test_example_beats_are_baseline_and_each_arms_peak(tmp_path):
    p, an = _run(tmp_path)
    kept = store.read_beats(tmp_path)
    assert kept.height == 2 * 4 * 3  # every unit of patient 0
    shown = example_beats(kept, an.summary)
    peak = an.summary.filter(pl.col("arm") == ARM)["peak_time_h"][0]
    for arm in ("placebo", ARM):  # placebo is shown at the riskiest arm's peak time
        times = sorted(set(shown.filter(pl.col("arm") == arm)["time_h"]))
        assert times == [-0.5, peak], (arm, times)
    assert example_beats(None, an.summary) is None


def test_report_escapes_names_and_embeds_every_figure(tmp_path):
    p, an = _run(tmp_path)
    paths = write_report(tmp_path, p, an)
    page = (tmp_path / "report.html").read_text()
    assert "&lt;b&gt;dof &amp; co&lt;/b&gt;" in page and ARM not in page
    assert "report &lt;test&gt;" in page and ", 4 patients," in page
    written = {x.stem for x in paths if x.suffix == ".png"}
    assert {"ddqtcf_time_course", "patient_risk", "beats", "cqtc"} <= written <= set(FIGURES)
    assert page.count('<img src="data:image/png;base64,') == len(written)


def test_names_with_markup_characters_and_an_all_invalid_run_still_make_a_report(tmp_path):
    """``$\\cmd$`` in an arm name once stopped the report in matplotlib's mathtext, after all the sampling."""
    from vtrial.cli import show_result

    d = {**TRIAL, "name": "p $\\cmd$", "arms": [TRIAL["arms"][0], {**TRIAL["arms"][1], "name": "$\\cmd$ arm"}]}
    p = parse_protocol(d)
    cohort, _ = load_cohort(p.cohort, p.seed)
    units = UnitPlan(p, cohort).all()
    for name, settings in (("mathtext", {}), ("all_invalid", {"noise_mv": 50.0})):
        out = tmp_path / name
        rows = MechanisticSampler(3, settings=settings).sample(units, p.seed)
        store.write_part(out, 0, rows, [a.name for a in p.arms], p.content_hash, p.seed)
        an = analyse(p, store.scan_samples(out))
        write_report(out, p, an)
        show_result(an, p.name)
        assert "$\\cmd$ arm" in (out / "report.html").read_text()
        if name == "all_invalid":
            assert not rows["valid"].any() and an.summary["peak_ms"].is_null().all()
