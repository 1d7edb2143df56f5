"""Drug library: built-ins, inline compounds, bad names."""

import math

import numpy as np
import pytest

from vtrial.physiology.block import CHANNELS
from vtrial.spec.drugs import Drug, get_drug, known_drugs


def test_twelve_cipa_training_drugs_with_categories():
    names = known_drugs()
    assert len(names) == 12
    cats = {n: get_drug(n).tdp_label for n in names}
    assert cats["dofetilide"] == "high" and cats["verapamil"] == "low" and cats["cisapride"] == "intermediate"
    d = get_drug("Dofetilide")
    assert d.ic50_vector[CHANNELS.index("hERG")] == pytest.approx(4.87)
    assert math.isnan(d.ic50_vector[CHANNELS.index("IKs")])  # NA = no block


def test_fda_study_drugs_have_fitted_pk():
    for name in ("dofetilide", "quinidine", "ranolazine", "verapamil"):
        pk = get_drug(name).pk
        assert pk is not None and pk.cl_l_h > 0 and "pooled OLS" in pk.source
        assert math.isfinite(pk.ke0_per_h)


def test_unknown_drug_lists_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown drug 'dofetelide'\. Did you mean 'dofetilide'\? Known drugs: bepridil, "
    ):
        get_drug("dofetelide")


def test_inline_drug_from_in_vitro_profile():
    d = Drug.from_dict(
        {
            "name": "cmpd-17",
            "ic50_nM": {"hERG": 120.0, "ICaL": 3000.0},
            "hill": {"hERG": 1.0},
            "mw_g_mol": 380.0,
            "fu": 0.2,
            "pk": {"ka_per_h": 1.0, "cl_l_h": 20.0, "v1_l": 150.0},
        }
    )
    assert d.ic50_vector[0] == 120.0 and np.isnan(d.ic50_vector[2])
    assert d.pk_params().cl_l_h[0] == 20.0


def test_drug_without_pk_says_so():
    with pytest.raises(ValueError, match=r"drug 'cisapride' has no PK parameters"):
        get_drug("cisapride").pk_params()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"ic50_nM": {"hERG": -3.0}}, r"ic50_nM.hERG = -3.0 must be >= 0"),
        ({"ic50_nM": {"IKr": 3.0}}, r"unknown channels \['IKr'\]"),
        ({"fu": 1.7}, r"fu = 1.7 must lie in \[0, 1\]"),
        ({"pk": {"ka_per_h": 1.0, "cl_l_h": -2.0, "v1_l": 10.0}}, r"pk.cl_l_h = -2.0 must be > 0"),
    ],
)
def test_bad_inline_drug(change, message):
    spec = {"name": "x", "ic50_nM": {"hERG": 10.0}, "hill": {}, "mw_g_mol": 300.0, "fu": 0.5, **change}
    with pytest.raises(ValueError, match=message):
        Drug.from_dict(spec)
