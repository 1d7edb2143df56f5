"""Peak driver memory of building a synthetic cohort, against its size (each size in a fresh process).

    python benchmarks/bench_cohort_memory.py [--sizes 400 3200]

Prints one JSON object on its last line: peak RSS (MB) per size and the ratio largest / smallest
(target: ≤ 1.2, the build's memory does not grow with the cohort).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = """
import resource, sys, time
from vtrial.sources.population import builtin_population, load_population, sample_cohort
t0 = time.perf_counter()
sample_cohort(load_population(builtin_population("healthy_adults")), int(sys.argv[1]), seed=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 3200])
    args = ap.parse_args()
    out = {}
    for n in args.sizes:
        t0 = time.perf_counter()
        rss, build_s = subprocess.run(
            [sys.executable, "-c", CHILD, str(n)], check=True, capture_output=True, text=True
        ).stdout.split()
        out[str(n)] = {
            "peak_rss_mb": round(float(rss), 1),
            "build_s": round(float(build_s), 1),
            "process_s": round(time.perf_counter() - t0, 1),
        }
        print(n, out[str(n)], flush=True)
    peaks = [v["peak_rss_mb"] for v in out.values()]
    print(json.dumps({"cohort_build": out, "rss_ratio": round(max(peaks) / min(peaks), 3), "target_ratio": 1.2}))


if __name__ == "__main__":
    main()
