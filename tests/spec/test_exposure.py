"""Exposure of every arm, patient and time: placebo, PK doses, fixed exposures and combinations."""

import numpy as np

from vtrial.physiology.block import CHANNELS
from vtrial.spec.protocol import parse_protocol
from vtrial.trial import build_units


def test_exposure_placebo_dose_fixed_and_combination(dofetilide_trial):
    d = dofetilide_trial
    d["drugs"] = {
        "cmpd": {"ic50_nM": {"hERG": 100.0}, "hill": {"hERG": 1.0}, "mw_g_mol": 400.0, "fu": 0.2, "free_cmax_nM": 50.0}
    }
    d["arms"] += [
        {"name": "fixed", "drugs": [{"drug": "cmpd", "exposure": {"multiple_of_free_cmax": 2}}]},
        {
            "name": "combo",
            "drugs": [
                {"drug": "cmpd", "exposure": {"conc_free_nM": 100.0}},
                {"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}},
            ],
        },
    ]
    u = build_units(parse_protocol(d))
    herg = u["block"][:, CHANNELS.index("hERG")]
    arm, t = u["arm_idx"], u["time_idx"]
    assert np.all(herg[arm == 0] == 0) and np.all(u["conc_free_nM"][arm == 0] == 0)
    assert np.all(herg[t == 0] == 0)  # the first time is pre-dose in every arm
    fixed = (arm == 2) & (t > 0)
    np.testing.assert_allclose(u["conc_free_nM"][fixed], 100.0)
    np.testing.assert_allclose(herg[fixed], 0.5)
    combo, dof = (arm == 3) & (t == 1), (arm == 1) & (t == 1)
    np.testing.assert_allclose(1 - herg[combo], 0.5 * (1 - herg[dof]))  # independent binding
