"""The FDA study as a held-out benchmark: the replica protocol, and `vtrial benchmark ecgrdvq` out of fold
(a reduced run: two folds, a short fit, the mechanistic sampler; the full figures are in the README)."""

import copy
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from vtrial.cli import app
from vtrial.data import example_protocol
from vtrial.model.checkpoint import save_checkpoint
from vtrial.spec.protocol import parse_protocol
from vtrial.studies.ecgrdvq_benchmark import split_subjects
from vtrial.trial import run_trial

ROOT = Path(__file__).resolve().parents[2]
DRUG_KEYS = {"peak_ddqtcf_error_ms", "rmse_ddqtcf_ms", "coverage90", "crps_ms", "lodo_peak_ddqtcf_error_ms", "cqtc"}


def test_split_covers_every_subject_once():
    groups = split_subjects(range(1001, 1023), 4)
    flat = [s for g in groups for s in g]
    assert sorted(flat) == list(range(1001, 1023)) and len(set(flat)) == 22
    assert [len(g) for g in groups] == [6, 6, 5, 5]
    assert groups == split_subjects(range(1001, 1023), 4)  # fixed seed


def test_replica_protocol_runs_the_22_subjects(shared_data, tmp_path):
    d = yaml.safe_load(example_protocol("fda_ecgrdvq").read_text())
    p = parse_protocol(d)
    assert [a.name for a in p.arms][0] == "placebo" and len(p.arms) == 5 and len(p.schedule.times_h) == 16
    small = copy.deepcopy(d)
    small["sampling"] = {"samples_per_patient": 2, "sampler": "mechanistic"}
    small["compute"] = {"replicas": 1, "batch_size": 512}
    res = run_trial(
        parse_protocol(small),
        out=tmp_path / "fda",
        progress=False,
        track=False,
        base_dir=example_protocol("fda_ecgrdvq").parent,
        data_dir=shared_data,
    )
    assert res.patients["patient"].n_unique() == 22
    peak = {r["arm"]: r["peak_ms"] for r in res.summary.iter_rows(named=True) if r["peak_ms"] is not None}
    assert peak["dofetilide_500ug"] > 30 and peak["quinidine_sulphate_400mg"] > 30  # the study: 79 and 79 ms
    assert peak["verapamil_120mg"] < 15  # the study: 5 ms


def test_benchmark_layout_out_of_fold(shared_data, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "ecgrdvq",
            "--data",
            str(shared_data),
            "--out",
            str(tmp_path),
            "--folds",
            "2",
            "--samples",
            "20",
            "--max-nfev",
            "3",
            "--draws",
            "2",
            "--sampler",
            "mechanistic",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "ecgrdvq.json").read_text())
    assert set(r["drugs"]) == {"dofetilide", "quinidine", "ranolazine", "verapamil"}
    assert "in-vivo potency needed / given (mechanistic beats): dofetilide" in " ".join(res.output.split())
    for v in r["drugs"].values():
        assert DRUG_KEYS <= set(v) and set(v["cqtc"]) == {
            "peak_ddqtcf_error_ms",
            "rmse_ddqtcf_ms",
            "coverage90",
            "crps_ms",
        }
        assert 0 <= v["coverage90"] <= 1 and v["crps_ms"] > 0 and v["lodo_peak_ddqtcf_error_ms"] is not None
    assert r["out_of_fold"] is True and r["settings"]["seed"] == 3 and r["settings"]["draws"] == 2
    assert r["settings"]["lodo_map"] == "ord"  # the left-out drug's repolarization from the cell model
    assert r["settings"]["discrepancy"] is True  # each fold's in-sample misfit per drug, recorded
    assert all(
        set(f["discrepancy_ms"]["mechanistic"]) == set(r["drugs"])
        and all(v >= 0 for v in f["discrepancy_ms"]["mechanistic"].values())
        for f in r["settings"]["folds_detail"]
    )
    assert set(r["settings"]["lodo_detail"]) == set(r["drugs"])
    assert r["settings"]["potency"] is True  # each fit's drugs' in-vivo potencies, recorded
    assert all(set(f["potency"]) == set(r["drugs"]) for f in r["settings"]["folds_detail"])
    for d, v in r["settings"]["lodo_detail"].items():  # the drug left out: the others' typical (geometric mean)
        others = [np.log(p) for k, p in v["potency"].items() if k != d]
        assert set(v["potency"]) == set(r["drugs"]) and v["potency"][d] == pytest.approx(np.exp(np.mean(others)))
        assert v["potency_needed"] is None or v["potency_needed"] > 0  # what the map would have needed
    assert all(v["coefficients"]["ord_jtpeak_gain"] >= 0 for v in r["settings"]["lodo_detail"].values())
    tests = [s for f in r["settings"]["folds_detail"] for s in f["test_subjects"]]
    assert sorted(tests) == sorted(set(tests)) and len(tests) == 22  # every subject predicted once
    assert (tmp_path / "ecgrdvq_ddqtcf.png").stat().st_size > 10_000


def test_benchmark_names_a_missing_table(tmp_path):
    res = CliRunner().invoke(app, ["benchmark", "ecgrdvq", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "SCR-002.Clinical.Data.csv not found" in res.output


def test_measured_exposure_is_the_subjects_own_and_library_draws_vary(shared_data):
    import numpy as np

    from vtrial.sources.study_table import load_clinical_table
    from vtrial.studies.ecgrdvq_benchmark import DRAW_KEY, TREATMENTS, _units

    table, _ = load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    times = np.array(sorted(table["time_h"].unique().to_list()))
    ke0 = {"dofetilide": 3.0, "quinidine": 5.0, "ranolazine": 0.5, "verapamil": 1.0}
    dof = TREATMENTS.index("dofetilide")
    for exposure in ("measured", "library"):
        u = _units(table, [1001, 1002], ke0, times, 0, 4, exposure)
        rows = (u["arm_idx"] == dof) & (u["patient"] // DRAW_KEY == 1001) & (u["time_h"] == 2.5)
        conc = u["conc_free_nM"][rows]
        assert conc.shape == (4,) and np.all(conc > 0)
        if exposure == "measured":  # every draw sees the subject's one measured concentration
            assert np.ptp(conc) == 0
            measured = table.filter(
                (table["subject"] == 1001) & (table["treatment"] == "dofetilide") & (table["time_h"] == 2.5)
            )["conc_ng_ml"].mean()
            from vtrial.spec.drugs import get_drug

            d = get_drug("dofetilide")
            assert conc[0] == pytest.approx(measured * 1000 / d.mw_g_mol * d.fu)
        else:  # a draw of the library's PK per copy
            assert np.ptp(conc) > 0
        # a fitted in-vivo potency: the channels see that multiple of the effect-site concentration
        stronger = _units(table, [1001, 1002], ke0, times, 0, 4, exposure, potency={"dofetilide": 2.0})
        herg, other = stronger["block"][:, 0], TREATMENTS.index("quinidine")
        assert np.all(herg[rows] > u["block"][rows, 0])
        np.testing.assert_array_equal(stronger["conc_free_nM"], u["conc_free_nM"])  # the plasma is unchanged
        np.testing.assert_array_equal(stronger["block"][u["arm_idx"] == other], u["block"][u["arm_idx"] == other])


def test_each_sample_has_its_own_draw_of_the_subjects_sensitivity_by_default(shared_data):
    """Independent samples of a test subject's predictive distribution (what coverage and the fair CRPS
    assume): by default every sample is its own work unit, with its own sensitivity draw; ``draws`` fewer
    than the samples spreads them over that many units, several samples each."""
    from vtrial.physiology.epk import default_coefficients
    from vtrial.sources.study_table import load_clinical_table
    from vtrial.studies.ecgrdvq_benchmark import simulate

    table, _ = load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    ke0 = {"dofetilide": 3.0, "quinidine": 5.0, "ranolazine": 0.5, "verapamil": 1.0}
    times = np.array([-0.5, 2.5])
    for draws, per_unit in ((None, 1), (4, 5)):
        pred = simulate(
            table,
            [1001],
            default_coefficients(),
            ke0,
            "mechanistic",
            20,
            0,
            times,
            draws,
            treatments=("placebo", "dofetilide"),
        )
        at = pred.filter((pl.col("treatment") == "dofetilide") & (pl.col("time_h") == 2.5))
        assert at.height == 20 and at["subject"].unique().to_list() == [1001]
        assert sorted(at["sample"].unique().to_list()) == list(range(per_unit))
        assert at["qtcf_ms"].n_unique() == 20


def test_benchmark_names_a_bad_exposure(tmp_path):
    (tmp_path / "SCR-002.Clinical.Data.csv").write_text("x\n")
    res = CliRunner().invoke(
        app, ["benchmark", "ecgrdvq", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--exposure", "guess"]
    )
    assert res.exit_code == 2 and "--exposure 'guess'" in res.output


def test_benchmark_names_a_bad_map(tmp_path):
    (tmp_path / "SCR-002.Clinical.Data.csv").write_text("x\n")
    res = CliRunner().invoke(
        app, ["benchmark", "ecgrdvq", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--lodo-map", "guess"]
    )
    assert res.exit_code == 2 and "--lodo-map 'guess'" in res.output and "ord" in res.output


def _tiny_worldmodel_benchmark(shared_data, tmp_path, tiny_config, **model_args) -> tuple[dict, Path]:
    """A reduced benchmark run of the world-model sampler with a tiny checkpoint trained here
    (``model_args``: ``TrainConfig`` fields); its ``ecgrdvq.json`` and the checkpoint."""
    from vtrial.model.train import train

    cfg = tiny_config(
        ae_steps=20,
        diffusion_train_steps=20,
        **model_args,
    )
    ckpt = save_checkpoint(train(cfg, log=lambda d: None)[0], tmp_path / "tiny.pt")
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "ecgrdvq",
            "--data",
            str(shared_data),
            "--out",
            str(tmp_path / "o"),
            "--folds",
            "2",
            "--samples",
            "20",
            "--max-nfev",
            "2",
            "--draws",
            "2",
            "--sampler",
            "worldmodel",
            "--checkpoint",
            str(ckpt),
        ],
    )
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "o" / "ecgrdvq.json").read_text()), ckpt


def test_a_world_model_that_reads_its_prior_gets_the_folds_maps_and_a_lodo_figure(shared_data, tmp_path, tiny_config):
    """With a checkpoint built with ``prior_input``, the world model is given each fold's map — fitted
    through the corpus's beats — and the leave-one-drug-out maps, as the mechanistic sampler is."""
    r, ckpt = _tiny_worldmodel_benchmark(
        shared_data, tmp_path, tiny_config, prior_input=True, residual=True, map_spread=0.5
    )
    assert r["out_of_fold"] is True
    assert all(v["lodo_peak_ddqtcf_error_ms"] is not None for v in r["drugs"].values())
    assert all("coefficients_worldmodel" in f and "ke0_per_h_worldmodel" in f for f in r["settings"]["folds_detail"])
    assert all("ke0_per_h_worldmodel" in v for v in r["settings"]["lodo_detail"].values())
    assert r["settings"]["worldmodel"]["checkpoint"] == str(ckpt) and r["settings"]["worldmodel"]["follows_map"] is True
    assert r["settings"]["worldmodel"]["sampler_settings"]["temperature"] == 1.0  # none stored in this checkpoint


def test_a_world_model_blind_to_its_prior_carries_the_shipped_map_with_refitted_delays(
    shared_data, tmp_path, tiny_config
):
    """Without ``prior_input`` the world model cannot follow a fold's map: it keeps the shipped one, its
    delays are refitted for that map in each fold, its discrepancy is that map's misfit, and it has no
    leave-one-drug-out figure."""
    r, _ = _tiny_worldmodel_benchmark(shared_data, tmp_path, tiny_config)
    assert r["out_of_fold"] is False and r["settings"]["worldmodel"]["follows_map"] is False
    assert all(v["lodo_peak_ddqtcf_error_ms"] is None for v in r["drugs"].values())
    for f in r["settings"]["folds_detail"]:
        assert set(f["ke0_per_h_worldmodel"]) == set(r["drugs"]) and all(
            v > 0 for v in f["ke0_per_h_worldmodel"].values()
        )
        assert set(f["discrepancy_ms"]["worldmodel"]) == set(r["drugs"])


def test_benchmark_names_a_bad_checkpoint(shared_data, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(
        app,
        ["benchmark", "ecgrdvq", "--data", str(shared_data), "--out", str(tmp_path / "o"), "--checkpoint", str(bad)],
    )
    assert res.exit_code == 2 and "--checkpoint" in res.output and "bad.pt" in res.output


def test_variability_adds_the_placebo_time_effect_and_a_drugs_discrepancy_to_that_drug_only():
    """``apply_variability``: the fitted placebo time effect shifts every post-dose sample; with
    ``discrepancy_ms`` each drug's post-dose samples spread by its SD in quadrature, placebo and pre-dose
    samples untouched by it."""
    from vtrial.studies.ecgrdvq_benchmark import apply_variability

    rng = np.random.default_rng(0)
    n = 20_000
    delta = pl.DataFrame(
        {
            "treatment": np.repeat(["placebo", "quinidine", "dofetilide"], n),
            "time_h": np.tile(np.r_[np.full(n // 2, -0.5), np.full(n // 2, 2.0)], 3),
            "dqtcf_ms": rng.normal(0.0, 5.0, 3 * n),
            "qtcf_ms": np.full(3 * n, 400.0),
        }
    )
    var = {"time_effect_ms": {2.0: 3.0}, "residual_sd_ms": 4.0}  # below the samples' own placebo spread: no top-up
    plain, extra = apply_variability(delta, var, 1)
    wide, _ = apply_variability(delta, var, 1, {"quinidine": 12.0})

    def sd(df, trt, post=True):
        return df.filter((pl.col("treatment") == trt) & ((pl.col("time_h") > 0) == post))["dqtcf_ms"].std()

    assert extra == 0.0
    assert plain.filter(pl.col("time_h") > 0)["dqtcf_ms"].mean() == pytest.approx(3.0, abs=0.2)
    assert sd(wide, "quinidine") == pytest.approx(np.hypot(5.0, 12.0), rel=0.03)
    for trt in ("placebo", "dofetilide"):
        assert sd(wide, trt) == pytest.approx(sd(plain, trt), rel=0.03) and sd(wide, trt) < 5.5
    assert wide.filter(pl.col("time_h") < 0)["dqtcf_ms"].equals(delta.filter(pl.col("time_h") < 0)["dqtcf_ms"])
