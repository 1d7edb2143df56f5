"""Feed batches to replicas with bounded work in flight, and survive replicas that die.

The driver keeps at most ``in_flight`` batches per replica submitted (backpressure: results come back
about as fast as they are written, and the driver never queues the whole trial in Ray). Ray itself
restarts a killed replica and retries its tasks (``max_restarts``, ``max_task_retries``); when a replica
is gone for good (restarts spent, node lost) its unfinished batches go back on the queue and a
replacement replica is started, up to ``max_replacements``. Each batch's result is yielded once. An
error raised by the sampler itself stops the run with the batch and the error named.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError


class DispatchError(RuntimeError):
    """Batches that could not be run, with the reason."""


def run_batches(
    pool: list,
    new_replica: Callable[[], Any],
    batches: Iterable[int],
    submit: Callable[[Any, int], Any],
    in_flight: int = 2,
    max_replacements: int | None = None,
    on_replace: Callable[[Exception], None] | None = None,
) -> Iterator[Any]:
    """Yield ``ray.get(submit(replica, index))`` for every batch index, in completion order; ``pool``: the
    started replicas, ``new_replica()`` starts a replacement."""
    lost_errors = (ActorDiedError, ActorUnavailableError, RayActorError)
    max_replacements = 2 * len(pool) if max_replacements is None else max_replacements
    pool = list(pool)
    load = {id(a): 0 for a in pool}
    queue = deque(batches)
    pending: dict[Any, tuple[int, Any]] = {}
    replaced = 0
    while queue or pending:
        for actor in pool:
            while queue and load[id(actor)] < in_flight:
                index = queue.popleft()
                pending[submit(actor, index)] = (index, actor)
                load[id(actor)] += 1
        if not pending:
            raise DispatchError(f"no replica left to run batches {sorted(queue)[:10]}")
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        index, actor = pending.pop(ref)
        load[id(actor)] -= 1
        try:
            result = ray.get(ref)
        except lost_errors as exc:
            queue.appendleft(index)
            if any(a is actor for a in pool):
                pool = [a for a in pool if a is not actor]
                if replaced >= max_replacements:
                    if not pool:
                        raise DispatchError(
                            f"every replica died and {replaced} replacements are spent; last error: {exc}"
                        ) from None
                else:
                    replaced += 1
                    fresh = new_replica()
                    pool.append(fresh)
                    load[id(fresh)] = 0
                    if on_replace is not None:
                        on_replace(exc)
            continue
        except RayTaskError as exc:  # the sampler itself raised: rerunning the batch would raise again
            cause = getattr(exc, "cause", None) or exc
            raise DispatchError(f"batch {index} failed in a replica: {type(cause).__name__}: {cause}") from None
        yield result
