"""Turning measurements into patients: batched fits of ECGSYN parameters.

- ``fit_waves``: batched Levenberg–Marquardt least squares of ψ (in clinical units, ``Waves``) plus a
  baseline offset to B given beats, e.g. real median beats. The Jacobian is taken by central finite
  differences over all beats at once (each beat's parameters move only its own beat), so one iteration
  costs 2·16 batched beat evaluations and a (B, 16, 16) solve.
- ``waves_for_intervals``: a beat whose *measured* intervals equal given ones (RR, PR, QRS, J-Tpeak,
  Tpeak-Tend), by a few batched fixed-point corrections of the typical beat, measured with the same
  ``measure`` used everywhere else.
"""

from __future__ import annotations

import numpy as np
import torch

from vtrial.physiology.checks import check_positive
from vtrial.physiology.ecgsyn import ecgsyn_beat
from vtrial.physiology.waves import Waves
from vtrial.signal.measure import measure


def _pack(w: Waves, offset: torch.Tensor) -> torch.Tensor:
    return torch.cat([w.t_ms, w.sigma_ms.log(), w.height_mv, offset[:, None]], dim=1)  # (B, 16)


def _unpack(x: torch.Tensor, rr_s: torch.Tensor) -> tuple[Waves, torch.Tensor]:
    return Waves(x[:, 0:5], x[:, 5:10].exp(), x[:, 10:15], rr_s), x[:, 15]


def _model(x, rr_s, fs_hz, window_s):
    w, offset = _unpack(x, rr_s)
    return ecgsyn_beat(w.to_ecgsyn(), fs_hz, window_s, validate=False) + offset[:, None]


def fit_waves(
    beats, fs_hz: float, rr_s, window_s=(-0.4, 0.8), init: Waves | None = None, iterations: int = 40
) -> tuple[Waves, np.ndarray]:
    """Least-squares fit of ECGSYN waves to B beats at once.

    Parameters
    ----------
    beats : (B, T) beats in mV sampled at ``fs_hz`` over ``window_s`` (R at phase 0).
    rr_s : (B,) or scalar RR interval of each beat, s (not fitted).
    init : starting waves (default: the typical beat with heights scaled to each beat's R amplitude).
    iterations : Levenberg–Marquardt iterations.

    Returns
    -------
    (waves, rms_mv): the fitted ``Waves`` (with the fitted baseline offset dropped) and the residual
    RMS of each beat in mV.
    """
    y = torch.as_tensor(np.asarray(beats, dtype=float))
    b = y.shape[0]
    rr = torch.as_tensor(np.broadcast_to(np.asarray(rr_s, float), (b,)).copy())
    check_positive("rr_s", rr)
    if init is None:
        init = Waves.typical(b, 1.0).replace(rr_s=rr)
        r_amp = (y.max(dim=1).values - y.median(dim=1).values).clamp(min=0.1)
        init = init.replace(height_mv=init.height_mv * (r_amp / init.height_mv[:, 2])[:, None])
    x = _pack(init, y.median(dim=1).values)
    lam = torch.full((b,), 1e-2, dtype=x.dtype)
    steps = torch.tensor([0.5] * 5 + [0.01] * 5 + [0.005] * 5 + [0.001], dtype=x.dtype)

    def residual(params):
        return _model(params, rr, fs_hz, window_s) - y

    r = residual(x)
    cost = (r**2).sum(dim=1)
    for _ in range(iterations):
        jac = torch.empty(b, y.shape[1], x.shape[1], dtype=x.dtype)
        for p in range(x.shape[1]):
            dx = torch.zeros_like(x)
            dx[:, p] = steps[p]
            jac[:, :, p] = (residual(x + dx) - residual(x - dx)) / (2 * steps[p])
        jtj = jac.transpose(1, 2) @ jac
        jtr = (jac.transpose(1, 2) @ r[:, :, None])[:, :, 0]
        diag = torch.diagonal(jtj, dim1=1, dim2=2)
        damped = jtj + torch.diag_embed(lam[:, None] * diag + 1e-9)
        delta = torch.linalg.solve(damped, -jtr)
        cand = x + delta
        cand[:, 5:10] = cand[:, 5:10].clamp(np.log(1.0), np.log(300.0))  # widths 1-300 ms
        r_new = residual(cand)
        cost_new = (r_new**2).sum(dim=1)
        better = torch.isfinite(cost_new) & (cost_new < cost)
        x = torch.where(better[:, None], cand, x)
        r = torch.where(better[:, None], r_new, r)
        cost = torch.where(better, cost_new, cost)
        lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-7, 1e7)
    waves, _ = _unpack(x, rr)
    return waves, (cost / y.shape[1]).sqrt().numpy()


def waves_for_intervals(
    rr_ms, pr_ms, qrs_ms, jtpeak_ms, tpte_ms, fs_hz: float = 1000.0, iterations: int = 8, base: Waves | None = None
) -> tuple[Waves, dict]:
    """Waves whose measured PR, QRS, J-Tpeak and Tpeak-Tend equal the given ones (all (B,) ms).

    Starting from the typical beat (or ``base``), each iteration measures the beats and corrects: PR by
    moving the P wave, QRS by scaling the Q, R, S widths and offsets, J-Tpeak by moving the T wave,
    Tpeak-Tend by scaling the T width. Returns the waves and their final measurement.
    """
    rr = torch.as_tensor(np.atleast_1d(np.asarray(rr_ms, float)))
    b = rr.shape[0]
    targets = {
        k: torch.as_tensor(np.broadcast_to(np.asarray(v, float), (b,)).copy())
        for k, v in dict(pr_ms=pr_ms, qrs_ms=qrs_ms, jtpeak_ms=jtpeak_ms, tpte_ms=tpte_ms).items()
    }
    for name, value in {"rr_ms": rr, **targets}.items():
        check_positive(name, value)
    w = base if base is not None else Waves.typical(b, 1.0)
    w = w.replace(rr_s=rr / 1000.0)
    window = (-0.5, 1.0)
    for _ in range(iterations):
        m = measure(ecgsyn_beat(w.to_ecgsyn(), fs_hz, window), fs_hz, rr, window_start_s=window[0])
        got = {k: torch.as_tensor(m[k]) for k in targets}
        t, s = w.t_ms.clone(), w.sigma_ms.clone()
        qrs_scale = (targets["qrs_ms"] / got["qrs_ms"]).nan_to_num(1.0).clamp(0.5, 2.0)
        t[:, 1] = t[:, 1] * qrs_scale
        t[:, 3] = t[:, 3] * qrs_scale
        s[:, 1:4] = s[:, 1:4] * qrs_scale[:, None]
        t[:, 0] = t[:, 0] - (targets["pr_ms"] - got["pr_ms"]).nan_to_num(0.0)
        # keep the P wave clear of the QRS (its tail would otherwise sit on the PR segment, the
        # isoelectric reference, and the corrections could chase a moving baseline)
        t[:, 0] = torch.minimum(t[:, 0], t[:, 1] - 2 * s[:, 1] - 2.5 * s[:, 0])
        t[:, 4] = t[:, 4] + (targets["jtpeak_ms"] - got["jtpeak_ms"]).nan_to_num(0.0)
        s[:, 4] = s[:, 4] * (targets["tpte_ms"] / got["tpte_ms"]).nan_to_num(1.0).clamp(0.5, 2.0)
        w = w.replace(t_ms=t, sigma_ms=s)
    m = measure(ecgsyn_beat(w.to_ecgsyn(), fs_hz, window), fs_hz, rr, window_start_s=window[0])
    return w, m
