"""A sampler replica: the Ray actor that holds one copy of the sampler on its device, and the memory rule
that sizes its sampler calls.

Ray places each actor with the protocol's ``gpus_per_replica`` (a fraction packs several replicas on one
GPU) and ``cpus_per_replica``; the actor reads its GPU ids from Ray and uses CUDA when it has a GPU id
and CUDA is available, else the CPU. The driver's batches are fixed by the protocol (so tables never
depend on the hardware); inside a batch the replica calls the sampler on chunks of at most
``units_per_call`` units, sized from the device's free memory and its share of it, and halves the chunk
when an allocation fails. Every unit draws from its own seed, so the chunking never changes a row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import ray
import torch

from vtrial.sampling.beats import WINDOW_S, sample_keeping
from vtrial.sampling.registry import make_sampler
from vtrial.spec.protocol import Protocol

WORK_BYTES_PER_VALUE = 48  # working memory per beat sample (inputs, ECGSYN / denoiser activations, measurement)
MEMORY_SHARE = 0.5  # of the free memory the replica's share may use


def beat_values(protocol) -> int:
    """Signal values per sampled beat (the samplers' beat window at the protocol's sampling rate)."""
    return int(round((WINDOW_S[1] - WINDOW_S[0]) * protocol.sampling.fs_hz))


def units_per_call(free_bytes: float, share: float, samples_per_unit: int, values_per_beat: int) -> int:
    """How many units one sampler call may take in ``share`` of ``free_bytes`` (at least 1)."""
    per_unit = samples_per_unit * values_per_beat * WORK_BYTES_PER_VALUE
    return max(1, int(free_bytes * share * MEMORY_SHARE // per_unit))


def free_memory_bytes(device: str) -> float:
    """Free memory of the device: CUDA's free bytes, or the host's available physical memory."""
    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info()[0])
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def sample_in_chunks(
    sampler, units: dict[str, np.ndarray], seed: int, max_units: int, keep: np.ndarray | None = None
) -> tuple[dict, np.ndarray | None, int]:
    """``sample_keeping`` over chunks of at most ``max_units`` units, halving on an out-of-memory error;
    returns the rows (as one call would), the beats of the units marked in ``keep`` (or None) and the
    chunk size that worked."""
    n = len(units["patient"])
    parts, kept, lo = [], [], 0
    while lo < n:
        hi = min(n, lo + max_units)
        try:
            rows, beats = sample_keeping(
                sampler, {k: v[lo:hi] for k, v in units.items()}, seed, None if keep is None else keep[lo:hi]
            )
        except Exception as exc:  # noqa: BLE001 - only memory errors are retried
            if not _out_of_memory(exc) or max_units == 1:
                raise
            _empty_cache()
            max_units = max(1, max_units // 2)
            continue
        parts.append(rows)
        if beats is not None:
            kept.append(beats)
        lo = hi
    beats = np.concatenate(kept) if kept else None
    if len(parts) == 1:
        return parts[0], beats, max_units
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, beats, max_units


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@ray.remote
class SamplerReplica:
    """One sampler replica; loads once on its device, then takes batches."""

    def __init__(self, protocol_dict: dict, threads: int, base_dir: str | None, gpus_per_replica: float):
        torch.set_num_threads(max(1, threads))
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        self.device = "cuda" if self.gpu_ids and torch.cuda.is_available() else "cpu"
        protocol = Protocol.model_validate(protocol_dict)
        self.sampler = make_sampler(protocol, self.device, Path(base_dir) if base_dir else None)
        # a fractional GPU shares the card's memory; on the host, the node's CPUs share its memory
        share = min(1.0, gpus_per_replica) if self.device == "cuda" else threads / max(1, os.cpu_count() or 1)
        self.max_units = units_per_call(
            free_memory_bytes(self.device), share, protocol.sampling.samples_per_patient, beat_values(protocol)
        )
        self.node_id = ray.get_runtime_context().get_node_id()

    def run(self, index: int, units: dict, seed: int, keep: np.ndarray | None = None):
        """Sample one batch; returns (index, rows, the beats of the units in ``keep`` or None, where)."""
        t0 = time.perf_counter()
        rows, beats, self.max_units = sample_in_chunks(self.sampler, units, seed, self.max_units, keep)
        return index, rows, beats, {**self.where(), "compute_s": time.perf_counter() - t0}

    def where(self) -> dict:
        return {
            "node_id": self.node_id,
            "gpu_ids": self.gpu_ids,
            "pid": os.getpid(),
            "device": self.device,
            "units_per_call": self.max_units,
            "fs_hz": float(self.sampler.fs_hz),
        }
