"""Batched measurement vs neurokit2's DWT delineation, and QT on a real median beat, in one run.

    python benchmarks/bench_measure.py [--batch 4096] [--reference 32] [--data ../shared/data] [--out DIR]

Speed: ``measure`` on ``--batch`` ECGSYN beats (500 Hz, 1.2-s windows) at once vs
``neurokit2.ecg_delineate(method="dwt")`` called per beat on ``--reference`` of the same beats (each one
cycle long, tiled to 5 s so that the wavelet and its segmenter have context; the middle beat's
fiducials are used).
Real beat: the lead-II median beat of PTB record s0010_re (patient001, 1 kHz) measured by both; QT is
QRS onset (neurokit2: R onset) to T end (T offset). A PNG of the beat with both sets of fiducials is
written to --out. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, varied_waves  # noqa: E402

from vtrial.physiology.ecgsyn import ecgsyn_beat  # noqa: E402
from vtrial.signal.measure import measure  # noqa: E402
from vtrial.signal.median_beat import median_beat  # noqa: E402

TARGET_SPEEDUP = 500.0
TARGET_QT_MS = 20.0


def one_cycle_tiled(beat, fs, rr_ms, r_index):
    """≥ 5 s of identical cycles cut from a median-beat window (neurokit2 segments nothing shorter than
    4 s), and their R indices."""
    rr = int(round(rr_ms / 1000 * fs))
    start = max(0, r_index - int(round(0.35 * rr)))
    cycle = beat[start : min(len(beat), start + rr)]
    copies = int(np.ceil(5.0 * fs / len(cycle))) + 1
    return np.tile(cycle, copies), np.arange(copies) * len(cycle) + (r_index - start)


def neurokit_fiducials(nk, sig, rpeaks, fs):
    _, w = nk.ecg_delineate(sig, rpeaks=rpeaks, sampling_rate=fs, method="dwt")
    mid = len(rpeaks) // 2
    out = {k: w[k][mid] for k in ("ECG_R_Onsets", "ECG_T_Peaks", "ECG_T_Offsets", "ECG_P_Onsets")}
    out["R"] = rpeaks[mid]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--reference", type=int, default=32)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_measure"))
    args = ap.parse_args()
    import neurokit2 as nk

    warnings.filterwarnings("ignore")
    fs = 500.0
    waves = varied_waves(args.batch, seed=1)
    beats = ecgsyn_beat(waves.to_ecgsyn(), fs).numpy()
    rr_ms = waves.rr_s.double().numpy() * 1000
    t_vtrial = best_of(lambda: measure(beats, fs, rr_ms), repeats=3)
    ours = measure(beats, fs, rr_ms)

    qt_nk, t0 = [], time.perf_counter()
    for i in range(args.reference):
        sig, rpeaks = one_cycle_tiled(beats[i], fs, rr_ms[i], int(0.4 * fs))
        f = neurokit_fiducials(nk, sig, rpeaks, int(fs))
        qt_nk.append((f["ECG_T_Offsets"] - f["ECG_R_Onsets"]) / fs * 1000)
    t_nk = time.perf_counter() - t0
    synth_diff = np.array(qt_nk, float) - ours["qt_ms"][: args.reference]

    result = {
        "batch": args.batch,
        "vtrial_beats_per_s": round(args.batch / t_vtrial, 1),
        "neurokit2_beats_per_s": round(args.reference / t_nk, 2),
    }
    result["speedup"] = round(result["vtrial_beats_per_s"] / result["neurokit2_beats_per_s"], 1)
    result["synthetic_qt_diff_ms_median"] = round(float(np.nanmedian(synth_diff)), 2)
    result["synthetic_qt_diff_ms_mad"] = round(float(np.nanmedian(np.abs(synth_diff - np.nanmedian(synth_diff)))), 2)

    record = args.data / "wfdb" / "ptbdb" / "s0010_re"
    if record.with_suffix(".hea").is_file():
        import wfdb

        rec = wfdb.rdrecord(str(record))
        lead = rec.p_signal[:, rec.sig_name.index("ii")]
        mb = median_beat(lead, rec.fs)
        m = measure(mb.beat_mv[None], rec.fs, mb.rr_ms)
        r_index = int(round(0.4 * rec.fs))
        sig, rpeaks = one_cycle_tiled(mb.beat_mv, rec.fs, mb.rr_ms, r_index)
        f = neurokit_fiducials(nk, sig, rpeaks, int(rec.fs))
        offset = f["R"] - r_index  # tiled index of window index 0
        qt_nk_real = (f["ECG_T_Offsets"] - f["ECG_R_Onsets"]) / rec.fs * 1000
        result.update(
            {
                "qt_ms_vtrial": round(float(m["qt_ms"][0]), 1),
                "qt_ms_neurokit2": round(float(qt_nk_real), 1),
                "qt_diff_ms": round(float(m["qt_ms"][0] - qt_nk_real), 1),
                "r_to_tpeak_ms_vtrial": round(float((m["tpeak_s"][0] - m["r_s"][0]) * 1000), 1),
                "r_to_tpeak_ms_neurokit2": round(float((f["ECG_T_Peaks"] - f["R"]) / rec.fs * 1000), 1),
                "real_beat": f"PTB s0010_re lead ii median beat, {mb.n_beats} beats, RR {mb.rr_ms:.0f} ms",
            }
        )
        args.out.mkdir(parents=True, exist_ok=True)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = (np.arange(len(mb.beat_mv)) - r_index) / rec.fs * 1000
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(t, mb.beat_mv, color="k", lw=1)
        for key, color in (("qrs_on_s", "tab:blue"), ("tpeak_s", "tab:blue"), ("tend_s", "tab:blue")):
            ax.axvline((m[key][0] * rec.fs - r_index) / rec.fs * 1000, color=color, ls="-", lw=1)
        for key in ("ECG_R_Onsets", "ECG_T_Peaks", "ECG_T_Offsets"):
            ax.axvline((f[key] - offset - r_index) / rec.fs * 1000, color="tab:orange", ls="--", lw=1)
        ax.set_xlabel("time from R (ms)")
        ax.set_ylabel("mV")
        ax.set_title(
            f"PTB s0010_re lead II median beat: QT vtrial {result['qt_ms_vtrial']} ms (solid), "
            f"neurokit2 {result['qt_ms_neurokit2']} ms (dashed)",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(args.out / "ptb_s0010_qt.png", dpi=110)
        result["figure"] = str(args.out / "ptb_s0010_qt.png")
    else:
        result["qt_ms_vtrial"] = result["qt_ms_neurokit2"] = None
        result["skipped_real_beat"] = f"{record}.hea not found"
    result["target"] = {"speedup": TARGET_SPEEDUP, "qt_diff_ms": TARGET_QT_MS}
    result["meets_target"] = bool(
        result["speedup"] >= TARGET_SPEEDUP
        and result.get("qt_diff_ms") is not None
        and abs(result["qt_diff_ms"]) <= TARGET_QT_MS
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
