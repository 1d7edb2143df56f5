"""A drug's in-vivo potency in the Δ(block) fit: a factor on the concentration its channels see, fitted with
the map under a log-normal prior centred on 1."""

from dataclasses import replace

import numpy as np
import pytest

from vtrial.spec.drugs import get_drug
from vtrial.studies.epk_calibration import population_block


def test_potency_is_the_ic50s_divided_by_it():
    quinidine = get_drug("quinidine")
    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 24.0])
    stronger = replace(quinidine, ic50_nM={k: (None if v is None else v / 2.5) for k, v in quinidine.ic50_nM.items()})
    np.testing.assert_allclose(
        population_block(quinidine, 400.0, times, potency=2.5), population_block(stronger, 400.0, times), rtol=1e-12
    )
    np.testing.assert_array_equal(
        population_block(quinidine, 400.0, times, potency=1.0), population_block(quinidine, 400.0, times)
    )


@pytest.fixture(scope="module")
def table(shared_data):
    from vtrial.sources.study_table import load_clinical_table

    return load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")[0]


def test_fitted_potencies_enter_the_predictions_and_lower_the_misfit(table):
    from vtrial.studies.epk_fit import DRUGS, POTENCY_BOUNDS, _changes, fit

    plain = fit(table, exposure="measured", relative_attenuation=True)
    free = fit(table, exposure="measured", relative_attenuation=True, potency=True)
    assert plain.potency == {} and set(free.potency) == set(DRUGS)
    assert all(np.exp(POTENCY_BOUNDS[0]) <= v <= np.exp(POTENCY_BOUNDS[1]) for v in free.potency.values())
    assert free.cost < plain.cost  # four more parameters, the prior's cost included
    d = max(free.potency, key=lambda k: abs(np.log(free.potency[k])))
    with_potency = free.predict(d)["d_qtcf_ms"]
    without = _changes(free.data, d, free.ke0_per_h[d], free.coef)["d_qtcf_ms"]
    assert not np.allclose(with_potency, without)


def test_a_tight_prior_keeps_the_potencies_at_one(table, monkeypatch):
    from vtrial.studies import epk_fit

    monkeypatch.setattr(epk_fit, "POTENCY_PRIOR_MS", 1e4)
    f = epk_fit.fit(table, exposure="measured", relative_attenuation=True, potency=True, max_nfev=60)
    assert all(abs(np.log(v)) < 0.05 for v in f.potency.values()), f.potency


def test_potency_for_peak_finds_the_potency_behind_a_peak_and_none_out_of_reach(table):
    from copy import deepcopy

    from vtrial.physiology.epk import default_coefficients
    from vtrial.studies.epk_fit import _changes, observed, potency_for_peak

    data = observed(table, None, ("dofetilide",), exposure="measured")
    coef, ke0 = default_coefficients(), 3.0
    made = _changes(data, "dofetilide", ke0, coef, 0.4)["d_qtcf_ms"]
    assert potency_for_peak(data, "dofetilide", ke0, coef) != pytest.approx(0.4, rel=0.05)  # the real peak: another
    data.obs["dofetilide"]["qtcf_ms"] = made
    assert potency_for_peak(data, "dofetilide", ke0, coef) == pytest.approx(0.4, rel=1e-3)
    unreachable = deepcopy(data)
    unreachable.obs["dofetilide"]["qtcf_ms"] = made + 5000.0
    assert potency_for_peak(unreachable, "dofetilide", ke0, coef) is None


def test_potency_for_peak_brackets_below_where_the_beats_stop_being_measurable(monkeypatch):
    from types import SimpleNamespace

    from vtrial.studies import epk_fit

    def changes(data, drug, ke0, coef, potency):  # a peak of 100 ms per unit potency, unmeasurable above 5
        return {"d_qtcf_ms": np.array([0.0, 100.0 * potency if potency < 5 else np.nan])}

    monkeypatch.setattr(epk_fit, "_changes", changes)
    data = SimpleNamespace(obs={"x": {"qtcf_ms": np.array([10.0, 40.0, 20.0])}})
    assert epk_fit.potency_for_peak(data, "x", 1.0, None) == pytest.approx(0.4, rel=1e-3)
    data.obs["x"]["qtcf_ms"] = np.array([0.5])  # below the lowest potency's peak (1 ms): out of reach
    assert epk_fit.potency_for_peak(data, "x", 1.0, None) is None
