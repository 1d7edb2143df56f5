"""Fit the shipped TdP classifier (vtrial/data/tdp_classifier.json) from a finished run of
protocols/cipa_training.yaml:

    vtrial run protocols/cipa_training.yaml --out runs/cipa_training
    python scripts/fit_tdp_classifier.py runs/cipa_training

Runs whose drugs span fewer than two known categories predict with this file (a classifier fitted on the
same sampler as the run; a mismatch is warned about).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from vtrial.outputs import store
from vtrial.outputs.run_folder import RESOLVED
from vtrial.spec.protocol import Protocol
from vtrial.stats.analysis import analyse
from vtrial.stats.tdp import DEFAULT_CLASSIFIER


def main(run_dir: str) -> None:
    run = Path(run_dir)
    protocol = Protocol.model_validate(yaml.safe_load((run / RESOLVED).read_text()))
    an = analyse(protocol, store.scan_samples(run))
    if an.tdp_classifier is None or "tdp_lodo_accuracy" not in an.metrics:
        sys.exit(f"{run}: no TdP fit (the run needs fixed-exposure arms of drugs from at least two categories)")
    path = an.tdp_classifier.save(DEFAULT_CLASSIFIER)
    print(f"{path}: {an.tdp_classifier}")
    print({k: v for k, v in an.metrics.items() if k.startswith("tdp_")})


if __name__ == "__main__":
    main(sys.argv[1])
