"""Training pairs from WFDB records + an ECGRDVQ-layout table (records written here with wfdb.wrsamp)."""

import numpy as np
import polars as pl
import pytest
import torch
import wfdb

from vtrial.model.train import TrainConfig, train
from vtrial.model.wfdb_corpus import pairs_from_wfdb
from vtrial.physiology.block import hill_block
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.epk import apply_block
from vtrial.physiology.waves import Waves
from vtrial.spec.drugs import get_drug

FS = 500


def strip(waves: Waves, seconds=10.0, seed=0):
    rr = float(waves.rr_s[0])
    cycle = ecgsyn_beat(waves.to_ecgsyn(), FS, (-0.35 * rr, 0.65 * rr))[0].numpy()
    x = np.tile(cycle, int(np.ceil(seconds / rr)))[: int(seconds * FS)]
    return x + 0.01 * np.random.default_rng(seed).standard_normal(len(x))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    dof = get_drug("dofetilide")
    rows = []
    for subj in (1, 2):
        w = Waves.typical(1).replace(rr_s=torch.tensor([0.9 + 0.1 * subj], dtype=torch.float64))
        for period, (treat, dose, unit) in enumerate([("Dofetilide", 500, "ug"), ("Placebo", None, None)]):
            for tpt, conc_pg in ((-0.5, None), (2.5, 2600.0), (6.0, 1600.0)):
                name = f"s{subj}p{period}t{int(tpt * 10)}"
                if treat == "Dofetilide" and conc_pg is not None:
                    free = conc_pg / 1000 / dof.mw_g_mol * 1000 * dof.fu
                    ww = apply_block(w, hill_block([free], dof.ic50_vector, dof.hill_vector))
                else:
                    ww = w
                wfdb.wrsamp(
                    name,
                    fs=FS,
                    units=["mV"],
                    sig_name=["II"],
                    p_signal=strip(ww, seed=subj)[:, None],
                    fmt=["16"],
                    write_dir=str(d),
                )
                rows.append(
                    {
                        "EGREFID": name,
                        "RANDID": subj,
                        "SEX": "F",
                        "AGE": 30,
                        "WGHT": 70.0,
                        "EXTRT": treat,
                        "EXDOSE": dose,
                        "EXDOSU": unit,
                        "TPT": tpt,
                        "BASELINE": "Y" if tpt < 0 else "N",
                        "PCSTRESN": conc_pg if treat == "Dofetilide" else None,
                        "PCSTRESU": "pg/mL" if conc_pg and treat == "Dofetilide" else None,
                        "RR": 1000,
                        "PR": 160,
                        "QT": 400,
                        "QRS": 95,
                        "JTPEAK": 220,
                        "TPEAKTEND": 80,
                    }
                )
    rows.append({**rows[1], "EGREFID": "broken", "TPT": 8.0})
    (d / "broken.hea").write_text("broken 1 500 5000\nbroken.dat 16 200 16 0 0 0 0 II\n")  # no .dat
    pl.DataFrame(rows).write_csv(d / "meta.csv")
    return d


def test_pairs_from_records_and_table(study):
    pairs, skipped = pairs_from_wfdb(study / "meta.csv", study, lead="ii")
    assert len(pairs) == 2 * 2 * 2  # subjects × periods × post-dose times
    assert len(skipped) == 1 and skipped[0].startswith("broken:")
    dof = np.array([d == "dofetilide" for d in pairs.drug])
    assert pairs.block[dof, 0].min() > 0.2 and np.all(pairs.block[~dof] == 0)
    # the fitted prior reproduces the recorded post-dose beat closely (same generator here)
    err = (pairs.prior - pairs.target).abs().mean()
    assert float(err) < 0.05


def test_training_on_wfdb_records(study):
    cfg = TrainConfig(
        data="wfdb",
        metadata=str(study / "meta.csv"),
        records_dir=str(study),
        latent_dim=8,
        channels=8,
        width=32,
        depth=1,
        diffusion_steps=20,
        ae_steps=20,
        diffusion_train_steps=20,
        batch_size=8,
    )
    model, history = train(cfg, log=lambda d: None)
    assert history["pairs"] == 8 and np.isfinite(history["final_loss"])
