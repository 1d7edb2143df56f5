"""World-model sampling throughput against this machine's measured matmul peak (a roofline fraction).

    python benchmarks/bench_sampling.py [--checkpoint CKPT] [--units 64] [--samples 32] [--steps 20]

1. Peak: fp32 matmul FLOP/s of this machine (torch.mm of 2048² matrices, best of 5; 2n³ FLOPs each).
2. The sampler: ``WorldModel.sample`` for ``--units`` units × ``--samples`` (S = 32, a batch of
   units·S ≥ 1024 samples) with ``--steps`` DDIM steps; samples per second over the best of 3.
3. Its FLOPs, counted by torch's FlopCounterMode over one sampling call (the denoiser at every step,
   the decoder, and the encoder of the conditioning), divided by the time: the model's FLOP/s.
Last line: JSON with samples_per_s, model_flops_per_s, peak_flops_per_s, roofline_fraction.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of  # noqa: E402

from vtrial.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from vtrial.model.corpus import make_pairs  # noqa: E402

TARGET = 0.25


def peak_flops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / best_of(lambda: torch.mm(a, b), repeats=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    model = load_checkpoint(args.checkpoint)
    pairs = make_pairs(args.units, seed=3)
    n = args.units * args.samples
    d = model.model_args["latent_dim"]
    noise = torch.randn(args.steps + 1, n, d, generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            model.sample(
                pairs.baseline,
                pairs.prior,
                pairs.action,
                pairs.covariates,
                noise,
                args.steps,
                1.0,
                0.1,
                samples_per_unit=args.samples,
            )

    run()
    t = best_of(run, repeats=3)
    with FlopCounterMode(display=False) as counter:
        run()
    flops = counter.get_total_flops()
    peak = peak_flops()
    result = {
        "threads": torch.get_num_threads(),
        "batch_samples": n,
        "samples_per_unit": args.samples,
        "ddim_steps": args.steps,
        "samples_per_s": round(n / t, 1),
        "model_flops_per_sample": int(flops / n),
        "model_flops_per_s": round(flops / t, 1),
        "peak_flops_per_s": round(peak, 1),
        "roofline_fraction": round(flops / t / peak, 4),
        "target": {"roofline_fraction": TARGET},
    }
    result["meets_target"] = bool(result["roofline_fraction"] >= TARGET)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
