"""PK: the matrix-exponential solver against textbook closed forms, variability, bad input."""

import numpy as np
import pytest

from vtrial.physiology import pk

T = np.linspace(0, 48, 97)
MW = 400.0
TO_NM = 1e6 / MW


def run(params, doses, times=T):
    return pk.concentrations(params, doses, times)


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_one_compartment_oral_closed_form():
    p = pk.PKParams(
        cl_l_h=np.array([10.0, 3.0]), v1_l=np.array([100.0, 40.0]), ka_per_h=np.array([1.2, 0.5]), mw_g_mol=MW
    )
    out = run(p, [pk.DoseEvent(0.0, 50.0)])
    for i in range(2):
        ref = pk.one_compartment_oral_mg_l(T, 50.0, p.ka_per_h[i], p.cl_l_h[i], p.v1_l[i]) * TO_NM
        assert rel_err(out.conc_total_nM[i], ref) <= 1e-3


def test_one_compartment_bolus_and_infusion_closed_form():
    p = pk.PKParams(cl_l_h=5.0, v1_l=50.0, ka_per_h=1.0, mw_g_mol=MW)
    bolus = run(p, [pk.DoseEvent(0.0, 20.0, "iv_bolus")]).conc_total_nM[0]
    assert rel_err(bolus, pk.one_compartment_bolus_mg_l(T, 20.0, 5.0, 50.0) * TO_NM) <= 1e-3
    inf = run(p, [pk.DoseEvent(0.0, 20.0, "iv_infusion", duration_h=2.0)]).conc_total_nM[0]
    assert rel_err(inf, pk.one_compartment_infusion_mg_l(T, 20.0, 2.0, 5.0, 50.0) * TO_NM) <= 1e-3


def test_two_compartment_closed_forms():
    p = pk.PKParams(cl_l_h=8.0, v1_l=30.0, ka_per_h=0.9, q_l_h=12.0, v2_l=120.0, mw_g_mol=MW)
    oral = run(p, [pk.DoseEvent(0.0, 100.0)]).conc_total_nM[0]
    assert rel_err(oral, pk.two_compartment_oral_mg_l(T, 100.0, 0.9, 8.0, 30.0, 12.0, 120.0) * TO_NM) <= 1e-3
    bolus = run(p, [pk.DoseEvent(0.0, 100.0, "iv_bolus")]).conc_total_nM[0]
    assert rel_err(bolus, pk.two_compartment_bolus_mg_l(T, 100.0, 8.0, 30.0, 12.0, 120.0) * TO_NM) <= 1e-3


def test_repeated_doses_superpose_and_reach_steady_state():
    ka, cl, v, tau = 1.0, 6.0, 60.0, 12.0
    p = pk.PKParams(cl_l_h=cl, v1_l=v, ka_per_h=ka, mw_g_mol=MW)
    times = np.linspace(0, 120, 241)
    doses = pk.regimen(10.0, "oral", start_h=0.0, interval_h=tau, count=10)
    out = run(p, doses, times).conc_total_nM[0]
    ref = sum(pk.one_compartment_oral_mg_l(times - d.time_h, 10.0, ka, cl, v) for d in doses) * TO_NM
    assert rel_err(out, ref) <= 1e-3
    # average steady-state concentration = F·D / (CL·τ)
    last = (times >= 108) & (times <= 120)
    css_avg = np.trapezoid(out[last], times[last]) / 12.0
    assert css_avg == pytest.approx(10.0 / (cl * tau) * TO_NM, rel=0.01)


def test_ka_equal_k_is_finite():
    """The closed form is 0/0 at ka = k; the exact solver is not: C = D·k·t·e^{−kt}/V."""
    p = pk.PKParams(cl_l_h=5.0, v1_l=50.0, ka_per_h=0.1, mw_g_mol=MW)
    out = run(p, [pk.DoseEvent(0.0, 10.0)]).conc_total_nM[0]
    ref = 10.0 * 0.1 * T * np.exp(-0.1 * T) / 50.0 * TO_NM
    assert rel_err(out, ref) <= 1e-3


def test_effect_compartment_lags_plasma():
    p = pk.PKParams(cl_l_h=6.0, v1_l=60.0, ka_per_h=1.5, ke0_per_h=0.5, fu=0.4, mw_g_mol=MW)
    out = run(p, [pk.DoseEvent(0.0, 10.0)])
    ref = pk.one_compartment_oral_effect_mg_l(T, 10.0, 1.5, 6.0, 60.0, 0.5) * TO_NM * 0.4
    assert rel_err(out.conc_effect_free_nM[0], ref) <= 1e-3
    assert T[np.argmax(out.conc_effect_free_nM[0])] > T[np.argmax(out.conc_free_nM[0])]
    np.testing.assert_allclose(out.conc_free_nM, out.conc_total_nM * 0.4)


def test_lag_time_shifts_profile():
    base = pk.PKParams(cl_l_h=6.0, v1_l=60.0, ka_per_h=1.5, mw_g_mol=MW)
    lagged = pk.PKParams(cl_l_h=6.0, v1_l=60.0, ka_per_h=1.5, tlag_h=1.0, mw_g_mol=MW)
    a = run(base, [pk.DoseEvent(0.0, 10.0)], T).conc_total_nM[0]
    b = run(lagged, [pk.DoseEvent(0.0, 10.0)], T + 1.0).conc_total_nM[0]
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_variability_is_lognormal_and_seeded():
    typical = pk.PKParams(cl_l_h=10.0, v1_l=100.0, ka_per_h=1.0)
    var = pk.Variability(omega_cl=0.3, omega_v=0.2, omega_ka=0.4)
    a = pk.sample_individuals(typical, var, 20000, np.random.default_rng(1))
    b = pk.sample_individuals(typical, var, 20000, np.random.default_rng(1))
    np.testing.assert_array_equal(a.cl_l_h, b.cl_l_h)
    assert np.std(np.log(a.cl_l_h)) == pytest.approx(0.3, rel=0.03)
    assert np.median(a.v1_l) == pytest.approx(100.0, rel=0.02)
    assert np.std(np.log(a.ka_per_h)) == pytest.approx(0.4, rel=0.03)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: pk.DoseEvent(0.0, -5.0), r"amount_mg = -5.0 must be > 0"),
        (lambda: pk.DoseEvent(0.0, float("nan")), r"amount_mg = nan is not finite"),
        (lambda: pk.DoseEvent(0.0, 5.0, "iv_infusion"), r"duration_h = 0.0 must be > 0"),
        (lambda: pk.DoseEvent(0.0, 5.0, "rectal"), r"route = 'rectal' is not one of"),
        (lambda: pk.regimen(5.0, count=3), r"interval_h is required"),
        (
            lambda: pk.concentrations(
                pk.PKParams(cl_l_h=np.array([1.0, -2.0]), v1_l=1.0, ka_per_h=1.0), [pk.DoseEvent(0, 1)], [1.0]
            ),
            r"cl_l_h\[1\] = -2.0 must be > 0",
        ),
        (
            lambda: pk.concentrations(
                pk.PKParams(cl_l_h=1.0, v1_l=1.0, ka_per_h=1.0, fu=1.5), [pk.DoseEvent(0, 1)], [1.0]
            ),
            r"fu = 1.5 must lie in \[0, 1\]",
        ),
        (lambda: pk.Variability(omega_cl=-0.1), r"omega_cl = -0.1 must be >= 0"),
    ],
)
def test_bad_input(make, message):
    with pytest.raises(ValueError, match=message):
        make()
