"""The GPU path in one run, for a machine with an NVIDIA GPU (a device session has minutes, not hours).

    python benchmarks/gpu_check.py                # on the GPU machine (exits 2 without CUDA)
    python benchmarks/gpu_check.py --dry-run-cpu  # the same steps on CPU with logical GPUs, small sizes
    python benchmarks/gpu_check.py --part sampling  # steps 2-3 without Ray; --part ray: step 1 and run_trial

The parts exist because a device machine may have to be sent Ray and Polars in separate calls (each call
carries at most 64 MiB of wheels and working tree); each part prints its own JSON.

1. Replica pinning: ``run_trial`` with 1 replica × 1 GPU and with 2 replicas × 0.5 GPU; every replica must
   report device ``cuda`` and the GPU ids Ray gave it (two half replicas share one id).
2. CUDA sampling: the world-model sampler on CPU and on CUDA for the same units and seed; the noise is
   drawn on the host per unit, so the two differ only by float arithmetic: max |ΔQTcF| and the share of
   samples within 1 ms.
3. Throughput on the GPU: generation alone (``beats``) and generation + measurement (``sample``) for
   ``--units`` × 16 samples, best of 3, and at 4× the units; the same sampler on this machine's CPU
   threads (best of 2); and ``run_trial`` with 1 replica × 1 GPU (samples/s over the sampling phase).
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402
from bench_scale import n_samples  # noqa: E402
from bench_scale import protocol as scale_protocol

from vtrial.engine.cluster import start_local_ray  # noqa: E402
from vtrial.sources.locate import load_cohort  # noqa: E402
from vtrial.spec.work_units import UnitPlan  # noqa: E402
from vtrial.trial import run_trial


def protocol(patients: int, replicas: int, gpus: float, batch: int):
    """bench_scale's trial (3 arms, 8 times, 16 samples) with the world model on GPU replicas."""
    return scale_protocol(patients, "worldmodel", replicas, gpus_per_replica=gpus, batch_size=batch)


def placement(p, out: Path) -> tuple[list[dict], float]:
    res = run_trial(p, out=out, progress=False, track=False)
    info = json.loads((out / "run_info.json").read_text())
    return info["placement"], n_samples(p) / res.timings_s["sampling_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run-cpu", action="store_true")
    ap.add_argument("--units", type=int, default=1024)
    ap.add_argument("--part", choices=["all", "ray", "sampling"], default="all")
    args = ap.parse_args()
    dry = args.dry_run_cpu
    if not dry and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (use --dry-run-cpu to exercise the steps on CPU)", file=sys.stderr)
        sys.exit(2)
    device = "cpu" if dry else "cuda"
    units_n = 16 if dry else args.units
    tmp = Path(tempfile.mkdtemp(prefix="vtrial-gpu-check-"))
    result = {"device": device, "gpu": None if dry else torch.cuda.get_device_name(0), "part": args.part}
    if args.part in ("all", "ray"):
        result.update(ray_part(dry, device, tmp))
    if args.part in ("all", "sampling"):
        result.update(sampling_part(device, units_n))
    if device == "cuda":
        result["cuda_max_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(json.dumps(result))


def ray_part(dry: bool, device: str, tmp: Path) -> dict:
    """Step 1 and run_trial's sampling rate on one whole-GPU replica."""
    import ray

    result = {}
    start_local_ray(num_cpus=4, **({"num_gpus": 1} if dry else {}))
    try:
        whole, _ = placement(protocol(8, 1, 1.0, 64), tmp / "whole")
        half, _ = placement(protocol(8, 2, 0.5, 64), tmp / "half")
        p1 = protocol(16 if dry else 256, 1, 1.0, 256 if not dry else 64)
        _, run_rate = placement(p1, tmp / "rate")
    finally:
        ray.shutdown()
    result["placement_whole"] = whole
    result["placement_half"] = half
    ok_device = all(r["device"] == device for r in whole + half)
    ok_ids = len(whole[0]["gpu_ids"]) == 1 and len({tuple(r["gpu_ids"]) for r in half}) == 1
    result["pinning_ok"] = bool(ok_device and ok_ids)
    result["run_trial_samples_per_s_1_gpu_replica"] = round(run_rate, 1)
    return result


def sampling_part(device: str, units_n: int) -> dict:
    """Steps 2 and 3 in this process, without Ray."""
    from vtrial.sampling.registry import make_sampler

    result = {}
    p = protocol(max(2, units_n // 8), 1, 1.0, 64)
    cohort, _ = load_cohort(p.cohort, p.seed)
    units = UnitPlan(p, cohort).batch(slice(0, units_n))
    cpu_rows = make_sampler(p, "cpu").sample(units, p.seed)
    dev_sampler = make_sampler(p, device)
    dev_rows = dev_sampler.sample(units, p.seed)
    both = np.isfinite(cpu_rows["qtcf_ms"]) & np.isfinite(dev_rows["qtcf_ms"])
    diff = np.abs(cpu_rows["qtcf_ms"][both] - dev_rows["qtcf_ms"][both])
    result["cuda_vs_cpu_qtcf_max_abs_ms"] = round(float(diff.max()), 3) if diff.size else None
    result["cuda_vs_cpu_share_within_1ms"] = round(float(np.mean(diff <= 1.0)), 4) if diff.size else None
    result["valid_share_cpu_vs_device"] = [
        round(float(np.mean(cpu_rows["valid"])), 4),
        round(float(np.mean(dev_rows["valid"])), 4),
    ]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    n = len(units["patient"]) * p.sampling.samples_per_patient
    t_gen = best_of(lambda: (dev_sampler.beats(units, p.seed), sync()))
    t_all = best_of(lambda: (dev_sampler.sample(units, p.seed), sync()))
    t_cpu = best_of(lambda: make_sampler(p, "cpu").sample(units, p.seed), repeats=2)
    result.update(
        {
            "samples": n,
            "generation_samples_per_s": round(n / t_gen, 1),
            "generation_and_measurement_samples_per_s": round(n / t_all, 1),
            "measurement_share_of_time": round(1 - t_gen / t_all, 3),
            "cpu_generation_and_measurement_samples_per_s": round(n / t_cpu, 1),
            "cpu_threads": torch.get_num_threads(),
            "device_vs_cpu_speedup": round(t_cpu / t_all, 2),
        }
    )
    p4 = protocol(units_n // 2, 1, 1.0, 64)  # 12 units per patient: at least 4 × units_n
    units4 = UnitPlan(p4, load_cohort(p4.cohort, p.seed)[0]).batch(slice(0, 4 * units_n))
    n4 = len(units4["patient"]) * p.sampling.samples_per_patient
    t4 = best_of(lambda: (dev_sampler.sample(units4, p.seed), sync()))
    result.update({"samples_4x": n4, "generation_and_measurement_samples_per_s_4x": round(n4 / t4, 1)})
    return result


if __name__ == "__main__":
    main()
