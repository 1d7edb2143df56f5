"""The median beat of a lead: R peaks of either polarity, irregular beats left out, clear errors."""

import numpy as np
import pytest

from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.waves import Waves
from vtrial.signal.median_beat import detect_r_peaks, median_beat, remove_baseline

FS = 500


def strip(rr_s=(0.9,) * 14, wander_mv=0.3, noise_mv=0.01, seed=0):
    """A lead of ECGSYN beats at the given RR intervals, with baseline wander and noise; R times (samples)."""
    beat = ecgsyn_beat(Waves.typical(1).to_ecgsyn(), FS, (-0.4, 0.8))[0].numpy().astype(float)
    n = int((sum(rr_s) + 2.0) * FS)
    x, r = np.zeros(n), []
    t = 1.0
    for rr in rr_s:
        i = int(t * FS)
        x[i - int(0.4 * FS) : i + int(0.8 * FS)] += beat
        r.append(i)
        t += rr
    tt = np.arange(n) / FS
    x += wander_mv * np.sin(2 * np.pi * 0.2 * tt) + noise_mv * np.random.default_rng(seed).standard_normal(n)
    return x, np.array(r), beat


def test_r_peaks_are_found_in_either_polarity():
    x, r, _ = strip()
    for sign in (1, -1):
        found = detect_r_peaks(sign * x, FS)
        assert len(found) == len(r) and np.max(np.abs(found - r)) <= 2


def test_median_beat_recovers_the_beat_and_leaves_out_an_ectopic_one():
    rr = [0.9] * 6 + [0.5, 1.3] + [0.9] * 6  # one premature beat and its compensatory pause
    x, r, beat = strip(rr)
    mb = median_beat(x, FS)
    assert mb.n_beats == len(r) - 2 - 3  # ends and the three beats next to the irregular intervals
    assert mb.rr_ms == pytest.approx(900, abs=2)
    # wander removed and noise averaged out: the same beat as from a clean strip of the same rhythm
    clean = median_beat(strip(rr, wander_mv=0.0, noise_mv=0.0)[0], FS)
    assert np.max(np.abs(mb.beat_mv - clean.beat_mv)) < 0.03
    assert np.corrcoef(clean.beat_mv, beat)[0, 1] > 0.95  # the 0.5-Hz high-pass bends only the slow segments


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 s"):
        detect_r_peaks(np.zeros(FS), FS)
    with pytest.raises(ValueError, match="NaN or Inf"):
        detect_r_peaks(np.full(3 * FS, np.nan), FS)
    with pytest.raises(ValueError, match="only 0 R peaks"):
        median_beat(np.zeros(5 * FS), FS, r_peaks=[])
    assert np.allclose(remove_baseline(np.full(4 * FS, 2.0), FS), 0.0, atol=1e-6)
