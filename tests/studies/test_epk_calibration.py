"""The calibration helpers: no block changes no interval; hERG block lengthens QT in both beat morphologies."""

import numpy as np
import pytest

from vtrial.physiology.block import CHANNELS
from vtrial.physiology.epk import default_coefficients
from vtrial.physiology.waves import Waves
from vtrial.studies.epk_calibration import MORPHOLOGIES, interval_changes, mean_sensitivity


def test_no_block_no_change_and_herg_block_lengthens_qt():
    block = np.zeros((3, len(CHANNELS)))
    block[1:, CHANNELS.index("hERG")] = [0.2, 0.5]
    for morphology in MORPHOLOGIES:
        d = interval_changes(Waves.typical(1), block, default_coefficients(), morphology=morphology)
        assert d["valid"].all()
        assert d["d_qtcf_ms"][0] == pytest.approx(0.0, abs=1e-6), morphology
        assert 0 < d["d_qtcf_ms"][1] < d["d_qtcf_ms"][2], (morphology, d["d_qtcf_ms"])


def test_unknown_morphology_and_mean_sensitivity():
    with pytest.raises(ValueError, match="morphology = 'x'"):
        interval_changes(Waves.typical(1), np.zeros((1, len(CHANNELS))), default_coefficients(), morphology="x")
    assert mean_sensitivity(0.0) == 1.0 and mean_sensitivity(0.3) == pytest.approx(np.sqrt(1.09))
