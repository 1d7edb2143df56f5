"""The block→ECG map: physiology directions, the shipped calibration's signs, bad input."""

import numpy as np
import pytest

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.epk import (
    EpkCoefficients,
    apply_block,
    default_coefficients,
    effective_block,
    interval_shifts,
    prior_beat,
)
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import measure

FS = 1000.0
COEF = EpkCoefficients(
    jtpeak_ms={"hERG": 120.0, "ICaL": -100.0, "INaL": -100.0},
    tpte_ms={"hERG": 100.0},
    qrs_fraction={"INa": 1.0},
    pr_ms={"INa": 50.0, "ICaL": 100.0},
    attenuation={"ICaL": 2.0, "INaL": 2.0},
    t_flattening=0.3,
)


def block(**fractions):
    b = np.zeros((1, len(CHANNELS)))
    for ch, v in fractions.items():
        b[0, CHANNELS.index(ch)] = v
    return b


def measured(b, coef=COEF):
    w = Waves.typical(1)
    return measure(prior_beat(w, b, coef, FS), FS, 1000.0)


def test_no_block_is_the_baseline_beat():
    w = Waves.typical(1)
    same = apply_block(w, block(), COEF)
    for f in ("t_ms", "sigma_ms", "height_mv"):
        np.testing.assert_allclose(getattr(same, f), getattr(w, f))


def test_herg_block_delays_widens_and_flattens_t():
    base, herg = measured(block()), measured(block(hERG=0.5))
    assert herg["qtcf_ms"][0] - base["qtcf_ms"][0] > 60
    assert herg["jtpeakc_ms"][0] - base["jtpeakc_ms"][0] > 40
    assert herg["tpte_ms"][0] - base["tpte_ms"][0] > 30
    assert herg["t_amp_mv"][0] < base["t_amp_mv"][0]


def test_calcium_and_late_sodium_block_offset_jtpeak():
    base = measured(block())
    pure = measured(block(hERG=0.3))
    multi = measured(block(hERG=0.3, ICaL=0.3, INaL=0.3))
    assert multi["jtpeakc_ms"][0] - base["jtpeakc_ms"][0] < 0.5 * (pure["jtpeakc_ms"][0] - base["jtpeakc_ms"][0])


def test_sodium_block_widens_qrs_and_lengthens_pr():
    base, ina = measured(block()), measured(block(INa=0.3))
    assert ina["qrs_ms"][0] - base["qrs_ms"][0] > 15
    assert ina["pr_ms"][0] - base["pr_ms"][0] > 10


def test_shipped_coefficients_have_physiological_signs():
    c = default_coefficients()
    assert c.jtpeak_ms["hERG"] > 0 and c.tpte_ms["hERG"] > 0
    assert c.jtpeak_ms["ICaL"] <= 0 and c.jtpeak_ms["INaL"] <= 0
    assert c.pr_ms["ICaL"] >= 0 and c.qrs_fraction["INa"] >= 0
    assert "method" in c.fitted and "peak_ddqtcf_error_ms" in c.fitted


def test_herg_response_shapes():
    b = block(hERG=0.5)
    h = CHANNELS.index("hERG")
    concave = effective_block(b, EpkCoefficients(herg_saturation=0.5))[0, h]
    convex = effective_block(b, EpkCoefficients(herg_saturation=-1.2))[0, h]
    assert convex < 0.5 < concave  # s(0.5) against the linear 0.5
    assert effective_block(block(hERG=1.0), EpkCoefficients(herg_saturation=-1.2))[0, h] == pytest.approx(1.0)
    # κ → −1 with a slope-1 Hill block: the response grows as b/(1 − b), i.e. in proportion to concentration
    c = np.array([0.2, 0.5, 1.0, 2.0])
    b_hill = c / (1 + c)
    s = [effective_block(block(hERG=x), EpkCoefficients(herg_saturation=-1.001))[0, h] for x in b_hill]
    assert np.allclose(np.array(s) / c, s[0] / c[0], rtol=0.01)
    with pytest.raises(ValueError, match="herg_saturation"):
        EpkCoefficients(herg_saturation=-0.5)


def test_relative_attenuation_weighs_inward_block_against_herg_block():
    """Absolute: the attenuation grows with the ICaL block itself; relative: with its ratio to the hERG
    block, so a drug whose two blocks rise together is attenuated by the same factor all along."""
    b = np.vstack([block(hERG=0.1, ICaL=0.02), block(hERG=0.4, ICaL=0.08)])  # the same 5:1 ratio
    for relative in (False, True):
        coef = EpkCoefficients(jtpeak_ms={"hERG": 100.0}, attenuation={"ICaL": 3.0}, relative_attenuation=relative)
        m = interval_shifts(b, coef, np.ones(2))["jtpeak_ms"] / (100.0 * b[:, CHANNELS.index("hERG")])
        if relative:
            assert m[1] == pytest.approx(m[0], rel=0.05)  # (almost) the same factor at both exposures
        else:
            assert m[1] < 0.9 * m[0]  # four times the ICaL block, a smaller factor
    assert EpkCoefficients.from_dict(EpkCoefficients(relative_attenuation=True).to_dict()).relative_attenuation


def test_bad_input():
    with pytest.raises(ValueError, match=r"block\[0, 0\] = 1.5 must lie in \[0, 1\]"):
        apply_block(Waves.typical(1), block(hERG=1.5), COEF)
    with pytest.raises(ValueError, match=r"unknown channels \['hERG2'\]"):
        EpkCoefficients(jtpeak_ms={"hERG2": 1.0})
    with pytest.raises(ValueError, match=r"block has shape \(1, 3\)"):
        apply_block(Waves.typical(1), np.zeros((1, 3)), COEF)


def test_ord_map_takes_repolarization_from_the_cell_model():
    from vtrial.physiology.ord_surrogate import delta_apd90_ms

    coef = EpkCoefficients(jtpeak_ms={"hERG": 500.0}, qrs_fraction={"INa": 0.4}, ord_jtpeak_gain=0.8, ord_tpte_gain=0.3)
    b = np.vstack([block(hERG=0.3), block(hERG=0.3, ICaL=0.3), block(INa=0.2)])
    d = interval_shifts(b, coef, np.ones(3))
    d_apd = delta_apd90_ms(b)
    assert d["jtpeak_ms"] == pytest.approx(0.8 * d_apd) and d["tpte_ms"] == pytest.approx(0.3 * d_apd)
    assert d["jtpeak_ms"][1] < d["jtpeak_ms"][0]  # ICaL block offsets, per the cell model
    assert d["qrs_scale"][2] == pytest.approx(1 + 0.4 * 0.2)  # QRS keeps its channel term
    assert EpkCoefficients.from_dict(coef.to_dict()).uses_ord
    with pytest.raises(ValueError, match="both"):
        EpkCoefficients(ord_jtpeak_gain=0.8)


def test_apply_block_is_apply_shifts_of_the_maps_interval_shifts():
    from vtrial.physiology.epk import apply_shifts

    w = Waves.typical(3)
    b = np.zeros((3, len(CHANNELS)))
    b[:, CHANNELS.index("hERG")] = [0.0, 0.3, 0.6]
    b[:, CHANNELS.index("ICaL")] = [0.0, 0.2, 0.1]
    sens = np.array([1.0, 0.5, 2.0])
    a = apply_block(w, b, COEF, sens)
    c = apply_shifts(w, interval_shifts(b, COEF, w.rr_s.numpy()), sens)
    for x, y in ((a.t_ms, c.t_ms), (a.sigma_ms, c.sigma_ms), (a.height_mv, c.height_mv)):
        assert np.array_equal(x.numpy(), y.numpy())


def test_a_narrowing_t_wave_scaled_by_a_sensitive_patient_keeps_a_positive_width():
    from vtrial.physiology.epk import apply_shifts

    w = Waves.typical(1)
    shifts = {
        "jtpeak_ms": np.array([-30.0]),
        "tpte_ms": np.array([-2 * float(w.sigma_ms[0, 4])]),
        "qrs_scale": np.ones(1),
        "pr_ms": np.zeros(1),
        "t_height_scale": np.ones(1),
    }
    out = apply_shifts(w, shifts, np.array([3.0]))
    assert float(out.sigma_ms[0, 4]) >= 1.0 and np.isfinite(out.to_ecgsyn().b_rad.numpy()).all()


def test_changes_through_the_corpus_beats_add_the_corpus_morphology():
    """A map fitted for a world model acts through the beats its corpus draws: ECGSYN plus late/notched T
    and U waves that grow with hERG block — longer QTcF under hERG block, the same without block."""
    from vtrial.studies.epk_calibration import interval_changes

    w = Waves.typical(1)
    b = np.zeros((3, len(CHANNELS)))
    b[:, CHANNELS.index("hERG")] = [0.0, 0.3, 0.6]
    plain = interval_changes(w, b, COEF)
    rich = interval_changes(w, b, COEF, morphology="corpus")
    assert plain["valid"].all() and rich["valid"].all()
    assert abs(rich["d_qtcf_ms"][0]) < 2 and abs(plain["d_qtcf_ms"][0]) < 2
    assert rich["d_qtcf_ms"][2] > plain["d_qtcf_ms"][2] + 5 > 5
    with pytest.raises(ValueError, match="morphology"):
        interval_changes(w, b, COEF, morphology="rich")
