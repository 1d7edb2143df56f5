"""Effect-site concentrations from measured plasma samples, and the FDA table's concentrations per subject."""

import math

import numpy as np
import pytest

from vtrial.physiology.measured_exposure import effect_site, free_nM


def euler(times_h, conc, ke0, dt=1e-4):
    """dCe/dt = ke0 (C − Ce) with C linear between samples (0 at t = 0), explicit Euler on a fine grid."""
    knots_t = np.concatenate([[0.0], times_h])
    knots_c = np.concatenate([[0.0], conc])
    ce, t, out = 0.0, 0.0, []
    for target in times_h:
        while t < target - 1e-12:
            h = min(dt, target - t)
            ce += h * ke0 * (np.interp(t, knots_t, knots_c) - ce)
            t += h
        out.append(ce)
    return np.array(out)


def test_effect_site_matches_a_fine_numerical_solution():
    t = np.array([0.5, 1.0, 2.0, 2.5, 4.0, 8.0, 24.0])
    c = np.array([1.0, 3.0, 5.0, 4.0, 3.0, 1.5, 0.2])
    for ke0 in (0.2, 1.5, 10.0):
        assert np.allclose(effect_site(t, c, ke0), euler(t, c, ke0), atol=2e-3)


def test_effect_site_without_delay_is_the_plasma_and_predose_reads_zero():
    t = np.array([-0.5, 1.0, 2.0])
    c = np.array([[9.0, 2.0, 1.0], [7.0, 4.0, 3.0]])
    assert np.array_equal(effect_site(t, c, math.inf), [[0.0, 2.0, 1.0], [0.0, 4.0, 3.0]])
    slow = effect_site(t, c, 0.3)
    assert slow[:, 0].tolist() == [0.0, 0.0] and np.all(slow[:, 1:] < c[:, 1:])  # lags behind the rise


def test_effect_site_names_bad_input():
    with pytest.raises(ValueError, match="times_h"):
        effect_site([1.0, 2.0], [1.0, 2.0, 3.0], 1.0)
    with pytest.raises(ValueError, match="increase"):
        effect_site([2.0, 1.0], [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="ke0_per_h"):
        effect_site([1.0, 2.0], [1.0, 2.0], 0.0)


def test_free_nM_converts_ng_per_ml():
    assert free_nM(441.0, 441.0, 0.5) == pytest.approx(500.0)  # 1 µmol/L total, half free


def test_measured_concentrations_per_subject(shared_data):
    from vtrial.sources.study_table import load_clinical_table, measured_concentrations

    table, _ = load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    subjects = sorted(table["subject"].unique().to_list())
    times = np.array(sorted(table["time_h"].unique().to_list()))
    c, counts = measured_concentrations(table, "quinidine", subjects, times)
    assert c.shape == (22, 16)
    assert counts["subjects_without_period"] == 1 and np.isnan(c).all(axis=1).sum() == 1  # 21 took quinidine
    have = np.isfinite(c).all(axis=1)
    assert np.all(c[have][:, times <= 0] == 0) and np.all(c[have][:, times > 0] > 0)
    d, counts = measured_concentrations(table, "dofetilide", subjects, times)
    assert counts["early_missing_as_zero"] == 2  # two subjects below quantification at 0.5 h (triplicates merged)
    assert 2.0 < np.nanmean(d[:, times == 2.5]) < 3.5  # ng/mL: the study's mean peak ≈ 2.6


def test_fit_data_with_measured_exposure(shared_data):
    from vtrial.physiology.epk import default_coefficients
    from vtrial.sources.study_table import load_clinical_table
    from vtrial.studies.epk_fit import DRUGS, _changes, observed

    table, _ = load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    data = observed(table, exposure="measured")
    assert set(data.conc_free_nM) == set(DRUGS)
    assert data.conc_free_nM["quinidine"].shape == (21, 15) and data.conc_free_nM["dofetilide"].shape == (22, 15)
    pred = _changes(data, "dofetilide", 3.0, default_coefficients())
    assert np.isfinite(pred["d_qtcf_ms"]).all() and pred["d_qtcf_ms"].max() > 30  # the study: 79 ms at 2.5 h
    with pytest.raises(ValueError, match="exposure = 'guess'"):
        observed(table, exposure="guess")


def test_fit_ke0_recovers_the_shipped_delay_for_the_shipped_map(shared_data):
    """The shipped map and delays were fitted jointly; fitting dofetilide's delay alone for that map lands
    on the same optimum."""
    from vtrial.physiology.epk import default_coefficients
    from vtrial.sources.study_table import load_clinical_table
    from vtrial.studies.epk_fit import fit_ke0, observed

    table, _ = load_clinical_table(shared_data / "ecgrdvq" / "SCR-002.Clinical.Data.csv")
    coef = default_coefficients()
    ke0 = fit_ke0(observed(table, drugs=("dofetilide",)), coef)
    assert ke0["dofetilide"] == pytest.approx(coef.fitted["ke0_per_h"]["dofetilide"], rel=0.15)
