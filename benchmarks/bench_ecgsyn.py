"""Batched ECGSYN beats vs neurokit2's ECGSYN on the same beats, in one run.

    python benchmarks/bench_ecgsyn.py [--batch 4096] [--reference 24] [--fs 500]

vtrial: ``ecgsyn_beat`` on a batch of ``--batch`` distinct beats (float32, this machine's CPU threads).
neurokit2: ``ecg_simulate(method="ecgsyn")`` for ``--reference`` of the same beats, each simulated as
its own strip (no HRV, no noise) long enough for the z(0) transient to decay (the first beat after 6 s
is taken; neurokit2's strips end in a corrupted second, so 4 more cycles are simulated); neurokit2 has no batch mode, so this is what producing distinct beats costs with it.
Also reported: neurokit2's throughput inside one long strip of identical beats (``strip``), the most
favourable reading of its speed. nrmse: per beat, the RMS difference between neurokit2's beat and ours
plus ECGSYN's known 0.25-Hz baseline wander (which neurokit2 always adds), after a least-squares affine
map (neurokit2 min-max scales its strip), divided by the beat's range; the mean over the reference
beats (neurokit2's own solve_ivp tolerance, rtol = 1e-3, is most of what remains; see
tests/test_ecgsyn.py).
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, varied_waves  # noqa: E402

from vtrial.physiology.ecgsyn import MV_PER_Z, ecgsyn_beat  # noqa: E402

TARGET_SPEEDUP = 300.0
TARGET_NRMSE = 0.01


RESP_AMP, RESP_HZ = 0.005, 0.25  # ECGSYN's baseline wander z0(t), hard-wired in neurokit2


def resp_wander(t_s):
    """Steady state of dz/dt = −(z − A sin Ωt): A (sin Ωt − Ω cos Ωt) / (1 + Ω²)."""
    w = 2 * math.pi * RESP_HZ
    return RESP_AMP * (np.sin(w * t_s) - w * np.cos(w * t_s)) / (1 + w * w)


def nrmse_affine(ours, ref):
    """RMS of ref − (s·ours + c), s and c by least squares (ECGSYN's output scaling is arbitrary),
    over ref's range."""
    design = np.stack([ours, np.ones_like(ours)], axis=1)
    coef, *_ = np.linalg.lstsq(design, ref, rcond=None)
    return float(np.sqrt(np.mean((design @ coef - ref) ** 2)) / (ref.max() - ref.min()))


def aligned_nrmse(params, i, ref, t_abs, fs, window, max_shift_ms=4.0, step_ms=0.05):
    """nrmse after aligning phase: neurokit2's adaptive solver lets the neutral phase of the limit cycle
    drift by a few ms over a strip, so our beat is evaluated at window shifts of ±max_shift_ms and the
    best shift kept. Returns (nrmse, shift_ms)."""
    one = type(params)(
        params.theta_rad[i : i + 1].double(),
        params.a[i : i + 1].double(),
        params.b_rad[i : i + 1].double(),
        params.rr_s[i : i + 1].double(),
    )
    best = (np.inf, 0.0)
    for shift in np.arange(-max_shift_ms, max_shift_ms + step_ms / 2, step_ms):
        d = shift / 1000.0
        ours = ecgsyn_beat(one, fs, (window[0] + d, window[0] + d + len(ref) / fs))[0].numpy()
        err = nrmse_affine(ours / MV_PER_Z + resp_wander(t_abs), ref)
        best = min(best, (err, float(shift)))
    return best


def neurokit_beat(nk, params, i, fs, window):
    """One beat with neurokit2: its own strip, last full cycle, window around the R phase."""
    rr = float(params.rr_s[i])
    theta = (params.theta_rad[i].double() * 180 / math.pi).numpy()
    k_beat = int(math.ceil(6.0 / rr))  # the first beat after 6 s of transient decay
    n_cycles = k_beat + 4  # neurokit2 corrupts the strip's last second or so; stay clear of it
    hr = 60.0 / rr
    # neurokit2 rescales ti, bi by heart rate; undo it so that it simulates exactly these ψ
    f = math.sqrt(hr / 60.0)
    f2 = math.sqrt(f)
    ti = theta / np.array([f2, f, 1.0, f, f2])
    bi = params.b_rad[i].double().numpy() / f
    sig = nk.ecg_simulate(
        duration=n_cycles * rr,
        sampling_rate=fs,
        heart_rate=hr,
        heart_rate_std=0,
        noise=0,
        method="ecgsyn",
        ti=ti,
        ai=params.a[i].double().numpy(),
        bi=bi,
        random_state=0,
    )
    r_index = int(round(k_beat * rr * fs))
    lo, hi = int(round(window[0] * fs)), int(round(window[1] * fs))
    return sig[r_index + lo : r_index + hi], (r_index + np.arange(lo, hi)) / fs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--reference", type=int, default=24)
    ap.add_argument("--fs", type=float, default=500.0)
    args = ap.parse_args()
    import neurokit2 as nk

    warnings.filterwarnings("ignore")
    params = varied_waves(args.batch, seed=0).to_ecgsyn()
    window = (-0.3, 0.5)  # within one cycle for every RR in the batch (RR >= 0.7 s)
    ecgsyn_beat(params, args.fs, window)  # warm-up
    t_vtrial = best_of(lambda: ecgsyn_beat(params, args.fs, window), repeats=5)

    import time

    refs = []
    t0 = time.perf_counter()
    for i in range(args.reference):
        refs.append(neurokit_beat(nk, params, i, int(args.fs), window))
    t_nk = time.perf_counter() - t0
    errs, lags = [], []
    for i, (ref, t_abs) in enumerate(refs):
        err, shift_ms = aligned_nrmse(params, i, ref, t_abs, args.fs, window)
        errs.append(err)
        lags.append(abs(shift_ms))

    strip_s = 60.0
    t_strip = best_of(
        lambda: nk.ecg_simulate(
            duration=strip_s,
            sampling_rate=int(args.fs),
            heart_rate=70,
            heart_rate_std=0,
            noise=0,
            method="ecgsyn",
            random_state=0,
        ),
        repeats=2,
    )
    vt = args.batch / t_vtrial
    nk_rate = args.reference / t_nk
    nk_strip = strip_s * 70 / 60 / t_strip
    result = {
        "batch": args.batch,
        "fs_hz": args.fs,
        "threads": torch.get_num_threads(),
        "vtrial_beats_per_s": round(vt, 1),
        "neurokit2_beats_per_s": round(nk_rate, 2),
        "speedup": round(vt / nk_rate, 1),
        "neurokit2_strip_beats_per_s": round(nk_strip, 1),
        "speedup_vs_strip": round(vt / nk_strip, 1),
        "nrmse": round(float(np.mean(errs)), 5),
        "nrmse_max": round(float(np.max(errs)), 5),
        "neurokit2_phase_drift_ms_max": round(float(np.max(lags)), 1),
        "target": {"speedup": TARGET_SPEEDUP, "nrmse": TARGET_NRMSE},
        "meets_target": bool(vt / nk_rate >= TARGET_SPEEDUP and np.mean(errs) <= TARGET_NRMSE),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
