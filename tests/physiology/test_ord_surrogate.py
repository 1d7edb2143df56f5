"""The shipped ΔAPD90 surrogate against the ORd simulations it was fitted to, and against ORd itself."""

from importlib import resources

import numpy as np
import polars as pl
import pytest

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.ord import pace
from vtrial.physiology.ord_surrogate import delta_apd90_ms, surrogate

H, ICAL = CHANNELS.index("hERG"), CHANNELS.index("ICaL")


@pytest.fixture(scope="module")
def design():
    with resources.files("vtrial.data").joinpath("ord_apd90_design.csv").open() as f:
        return pl.read_csv(f)


def _block(df):
    return df.select([f"block_{ch}" for ch in CHANNELS]).to_numpy()


def test_no_block_no_change_and_bad_block_named():
    assert delta_apd90_ms(np.zeros(len(CHANNELS))) == 0.0
    with pytest.raises(ValueError, match="channels"):
        delta_apd90_ms(np.zeros(6))
    with pytest.raises(ValueError, match="block"):
        delta_apd90_ms(np.full(len(CHANNELS), 1.5))


def test_surrogate_reproduces_the_simulated_design(design):
    m = surrogate()
    ok = design["apd90_ms"].to_numpy() < m["cycle_ms"]
    d = design.filter(pl.Series(ok))
    err = delta_apd90_ms(_block(d)) - (d["apd90_ms"].to_numpy() - m["apd90_control_ms"])
    drugs = ~d["source"].is_in(["random", "control"]).to_numpy() & ~d["source"].str.starts_with("only_").to_numpy()
    assert np.sqrt(np.mean(err[drugs] ** 2)) < 5.0
    assert np.sqrt(np.mean(err**2)) < 8.0
    # the figure recorded with the model is the one these rows give (the file keeps 6 significant digits)
    assert np.sqrt(np.mean(err[drugs] ** 2)) == pytest.approx(m["fitted"]["rmse_drug_curves_ms"], rel=1e-3)


def test_surrogate_follows_the_cells_physiology():
    b = np.zeros((6, len(CHANNELS)))
    b[:, H] = np.linspace(0.0, 0.6, 6)
    herg = delta_apd90_ms(b)
    assert np.all(np.diff(herg) > 0) and herg[-1] > 100
    b[:, ICAL] = 0.3  # the same IKr block prolongs less with ICaL blocked too
    assert np.all(delta_apd90_ms(b)[1:] < herg[1:])


def test_design_rows_are_what_the_cell_model_gives(design):
    m = surrogate()
    rows = design.filter(pl.col("source").is_in(["dofetilide", "verapamil"])).sample(2, seed=1)
    apd = pace(_block(rows), m["beats"], m["cycle_ms"], base=m["conductance_factors"], state=m["steady_state"])[0][-1]
    # the step is shared across a batch (set by its fastest cell), so a cell's APD90 depends on its batch
    # mates by a few tenths of a ms
    assert apd == pytest.approx(rows["apd90_ms"].to_numpy(), abs=1.0)
