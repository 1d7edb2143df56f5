"""Representative (median) beat of an ECG lead, as thorough-QT studies measure it.

1. Baseline wander is removed with a zero-phase 0.5-Hz high-pass (Butterworth, order 2).
2. R peaks: Pan & Tompkins (IEEE TBME 1985) in outline — 5–15 Hz band-pass, squared derivative,
   150-ms moving integration, peaks ≥ 250 ms apart above 30 % of the 99th percentile — then snapped to
   the largest |deviation| within ±60 ms, so QS or negative-QRS leads work as well as positive ones.
3. Beats whose RR to both neighbours lies within 20 % of the median RR are kept; the median beat is
   their sample-wise median over a fixed window around R.
Pure computation: the caller reads the record (e.g. with ``wfdb.rdrecord``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps


@dataclass(frozen=True)
class MedianBeat:
    beat_mv: np.ndarray  # (T,) over window_s around R
    fs_hz: float
    window_s: tuple[float, float]
    rr_ms: float  # median RR of the kept beats
    n_beats: int  # beats in the median
    r_peaks: np.ndarray  # sample indices of all detected R peaks


def remove_baseline(signal_mv: np.ndarray, fs_hz: float, cutoff_hz: float = 0.5) -> np.ndarray:
    b, a = sps.butter(2, cutoff_hz / (fs_hz / 2), btype="highpass")
    return sps.filtfilt(b, a, np.asarray(signal_mv, float))


def detect_r_peaks(signal_mv: np.ndarray, fs_hz: float) -> np.ndarray:
    """R-peak sample indices of one lead (either QRS polarity)."""
    x = np.asarray(signal_mv, float)
    if x.ndim != 1 or len(x) < 2 * fs_hz:
        raise ValueError(f"need a 1-D signal of at least 2 s; got shape {x.shape} at {fs_hz} Hz")
    if not np.isfinite(x).all():
        raise ValueError("signal_mv contains NaN or Inf")
    b, a = sps.butter(2, [5 / (fs_hz / 2), 15 / (fs_hz / 2)], btype="bandpass")
    band = sps.filtfilt(b, a, x)
    energy = np.gradient(band) ** 2
    width = max(1, int(round(0.15 * fs_hz)))
    integrated = np.convolve(energy, np.ones(width) / width, mode="same")
    peaks, _ = sps.find_peaks(integrated, distance=int(0.25 * fs_hz), height=0.3 * np.percentile(integrated, 99))
    hp = remove_baseline(x, fs_hz)
    dev = np.abs(hp - np.median(hp))
    half = int(round(0.06 * fs_hz))
    snapped = [max(0, p - half) + int(np.argmax(dev[max(0, p - half) : p + half + 1])) for p in peaks]
    return np.unique(np.asarray(snapped, dtype=int))


def median_beat(
    signal_mv: np.ndarray,
    fs_hz: float,
    window_s=(-0.4, 0.8),
    r_peaks=None,
    rr_tolerance: float = 0.2,
    min_beats: int = 3,
) -> MedianBeat:
    """Median beat of one lead; raises ValueError when fewer than ``min_beats`` regular beats exist."""
    x = remove_baseline(signal_mv, fs_hz)
    peaks = detect_r_peaks(signal_mv, fs_hz) if r_peaks is None else np.asarray(r_peaks, int)
    if len(peaks) < min_beats + 2:
        raise ValueError(f"only {len(peaks)} R peaks found; need at least {min_beats + 2}")
    rr = np.diff(peaks) / fs_hz * 1000.0
    rr_med = float(np.median(rr))
    ok = np.abs(rr / rr_med - 1) <= rr_tolerance
    regular = np.zeros(len(peaks), dtype=bool)
    regular[1:-1] = ok[:-1] & ok[1:]
    lo, hi = int(round(window_s[0] * fs_hz)), int(round(window_s[1] * fs_hz))
    inside = (peaks + lo >= 0) & (peaks + hi <= len(x))
    keep = np.flatnonzero(regular & inside)
    if len(keep) < min_beats:
        raise ValueError(f"only {len(keep)} regular beats inside the window; need at least {min_beats}")
    segments = np.stack([x[peaks[i] + lo : peaks[i] + hi] for i in keep])
    rr_keep = float(np.median(np.concatenate([rr[keep - 1], rr[keep]])))
    return MedianBeat(np.median(segments, axis=0), float(fs_hz), tuple(window_s), rr_keep, len(keep), peaks)
