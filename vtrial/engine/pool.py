"""A pool of sampler replicas on the connected Ray cluster, fed batches of work units.

Each replica (``vtrial.engine.replica``) is placed with the protocol's ``gpus_per_replica`` and
``cpus_per_replica``; Ray restarts a killed one and retries its tasks, and ``vtrial.engine.dispatch``
replaces one that is gone for good. Results come back batch by batch, in completion order, for the
caller to write at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import ray

from vtrial.engine.dispatch import run_batches
from vtrial.engine.replica import SamplerReplica

MAX_RESTARTS = 3  # Ray's restarts of a replica (and retries of its tasks) before dispatch replaces it


class ReplicaPool:
    """``replicas`` sampler replicas of ``protocol`` (a ``vtrial.spec.protocol.Protocol``)."""

    def __init__(self, protocol, replicas: int, base_dir: Path | None = None):
        c = protocol.compute
        self._options = dict(
            num_cpus=c.cpus_per_replica,
            num_gpus=c.gpus_per_replica,
            max_restarts=MAX_RESTARTS,
            max_task_retries=MAX_RESTARTS,
        )
        self._args = (
            protocol.to_dict(),
            max(1, int(c.cpus_per_replica)),
            str(base_dir) if base_dir else None,
            c.gpus_per_replica,
        )
        self.seed = protocol.seed
        self.actors = [self._new() for _ in range(replicas)]

    def _new(self):
        return SamplerReplica.options(**self._options).remote(*self._args)

    def placement(self) -> list[dict]:
        """Where each replica runs (node, GPU ids, pid, device); waits until all are loaded."""
        return ray.get([a.where.remote() for a in self.actors])

    def run(
        self,
        batches: Iterable[int],
        units_of: Callable[[int], dict[str, np.ndarray]],
        keep_of: Callable[[dict[str, np.ndarray]], np.ndarray | None],
        on_replace: Callable[[Exception], None] | None = None,
    ) -> Iterator[tuple]:
        """(index, rows, kept beats or None, where) for every batch index; ``units_of(index)`` builds a
        batch's units when it is submitted, ``keep_of(units)`` marks the units whose beats come back."""

        def submit(actor, index):
            units = units_of(index)
            return actor.run.remote(index, units, self.seed, keep_of(units))

        yield from run_batches(self.actors, self._new, batches, submit, on_replace=on_replace)
