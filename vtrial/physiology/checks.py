"""Input checks shared by the physiology modules.

Every check raises ``ValueError`` naming the parameter, the offending index and its value, so a
caller can find the bad entry in a batch of thousands.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    idx = np.argwhere(bad)[0]
    where = "" if arr.ndim == 0 else "[" + ", ".join(str(int(i)) for i in idx) + "]"
    return f"{where} = {float(arr[tuple(idx)])!r}"


def check_finite(name: str, value) -> None:
    """Raise ValueError if ``value`` holds NaN or ±Inf."""
    arr = _as_numpy(value)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name}{_first_bad(arr, bad)} is not finite")


def check_positive(name: str, value) -> None:
    """Raise ValueError unless every entry of ``value`` is finite and > 0."""
    check_finite(name, value)
    arr = _as_numpy(value)
    bad = ~(arr > 0)
    if bad.any():
        raise ValueError(f"{name}{_first_bad(arr, bad)} must be > 0")


def check_nonnegative(name: str, value) -> None:
    """Raise ValueError unless every entry of ``value`` is finite and >= 0."""
    check_finite(name, value)
    arr = _as_numpy(value)
    bad = ~(arr >= 0)
    if bad.any():
        raise ValueError(f"{name}{_first_bad(arr, bad)} must be >= 0")


def check_fraction(name: str, value) -> None:
    """Raise ValueError unless every entry of ``value`` lies in [0, 1]."""
    check_finite(name, value)
    arr = _as_numpy(value)
    bad = ~((arr >= 0) & (arr <= 1))
    if bad.any():
        raise ValueError(f"{name}{_first_bad(arr, bad)} must lie in [0, 1]")
