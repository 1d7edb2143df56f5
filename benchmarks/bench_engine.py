"""The quickstart trial through the Ray engine vs the same work in one process without Ray, one run.

    python benchmarks/bench_engine.py [--protocol protocols/quickstart.yaml] [--out DIR]

Ray: ``run_trial`` (what ``vtrial run`` calls) with the protocol's replicas on an embedded local Ray.
``ray_start_s`` is the time to start Ray; ``samples_per_s`` is samples over the sampling phase once
replicas are up. ``ray_overhead_fraction`` is Ray's share of that phase: 1 − (sum of the replicas'
own compute time / replicas) / phase wall time (task dispatch, object transfer, waiting, and the
driver writing Parquet parts). In-process: the same batches through the same sampler in this process
(torch using all cores), no Ray. ``driver_peak_rss_mb`` is the driver's peak RSS during the Ray run.
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vtrial.sampling.registry import make_sampler
from vtrial.spec.work_units import batch_slices, take
from vtrial.trial import build_units, load_protocol, run_trial

TARGET_OVERHEAD = 0.15


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--protocol", type=Path, default=Path(__file__).resolve().parents[1] / "protocols" / "quickstart.yaml"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    p = load_protocol(args.protocol)
    out = args.out or Path(tempfile.mkdtemp(prefix="vtrial-bench-")) / "run"
    if out.exists():
        shutil.rmtree(out)
    n_samples = len(p.arms) * p.cohort.size * len(p.schedule.times_h) * p.sampling.samples_per_patient

    t0 = time.perf_counter()
    res = run_trial(p, out=out, progress=False, track=False, base_dir=args.protocol.parent)
    total_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = res.timings_s
    replicas = p.compute.replicas
    overhead = 1 - (t["replica_compute_s"] / replicas) / t["sampling_s"]

    units = build_units(p, args.protocol.parent)
    sampler = make_sampler(p)
    t0 = time.perf_counter()
    for sl in batch_slices(len(units["patient"]), p.compute.batch_size):
        sampler.sample(take(units, sl), p.seed)
    inproc_s = time.perf_counter() - t0

    result = {
        "protocol": p.name,
        "samples": n_samples,
        "replicas": replicas,
        "threads_inprocess": torch.get_num_threads(),
        "samples_per_s": round(n_samples / t["sampling_s"], 1),
        "inprocess_samples_per_s": round(n_samples / inproc_s, 1),
        "ray_overhead_fraction": round(overhead, 4),
        "ray_start_s": round(t["ray_start_s"], 2),
        "replicas_ready_s": round(t["replicas_ready_s"], 2),
        "aggregate_s": round(t["aggregate_s"], 2),  # risk tables, C-QTc, example beats, report
        "end_to_end_s": round(total_s, 2),
        "driver_peak_rss_mb": round(rss_mb, 1),
        "target": {"ray_overhead_fraction": TARGET_OVERHEAD},
        "meets_target": bool(overhead <= TARGET_OVERHEAD),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
