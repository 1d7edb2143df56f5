"""Helpers shared by the benchmarks: timing and a reproducible batch of varied beats."""

from __future__ import annotations

import time

import torch

from vtrial.physiology.waves import Waves


def best_of(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls, seconds (the first call warms caches and is included)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def varied_waves(n: int, seed: int, dtype=torch.float32) -> Waves:
    """n healthy-looking beats: RR 0.7-1.2 s, wave times ±8 ms, widths ±15 %, heights ±20 %."""
    g = torch.Generator().manual_seed(seed)
    w = Waves.typical(n, dtype=torch.float64)
    rr = 0.7 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    t = w.t_ms + 8 * (2 * torch.rand(n, 5, generator=g, dtype=torch.float64) - 1)
    t[:, 2] = 0.0
    s = w.sigma_ms * (1 + 0.15 * (2 * torch.rand(n, 5, generator=g, dtype=torch.float64) - 1))
    h = w.height_mv * (1 + 0.2 * (2 * torch.rand(n, 5, generator=g, dtype=torch.float64) - 1))
    return Waves(t.to(dtype), s.to(dtype), h.to(dtype), rr.to(dtype))
