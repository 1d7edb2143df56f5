"""The dispatcher: a replica that dies for good (no restarts left) is replaced, its batch rerun, and every
batch's result comes back exactly once; with no replacements left the run stops with a clear error."""

import os

import pytest

from vtrial.engine.cluster import start_local_ray
from vtrial.engine.dispatch import DispatchError, run_batches


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _worker_class(ray):
    @ray.remote(num_cpus=0.5, max_restarts=0)
    class Worker:
        """Dies (the process exits) on batch ``die_on`` the first time any worker meets it."""

        def __init__(self, marker: str, die_on: int):
            self.marker, self.die_on = marker, die_on

        def run(self, index: int):
            if index == self.die_on and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)
            return index, os.getpid()

    return Worker


def test_a_dead_replica_is_replaced_and_its_batch_rerun(local_ray, tmp_path):
    Worker = _worker_class(local_ray)

    def new():
        return Worker.remote(str(tmp_path / "died"), 5)

    replaced = []
    results = list(
        run_batches([new(), new()], new, range(20), lambda a, i: a.run.remote(i), on_replace=replaced.append)
    )
    assert sorted(i for i, _ in results) == list(range(20))  # each batch once, none lost
    assert len(replaced) == 1 and (tmp_path / "died").exists()
    assert len({pid for _, pid in results}) >= 2


def test_no_replacements_left_is_an_error(local_ray, tmp_path):
    Worker = _worker_class(local_ray)
    with pytest.raises(DispatchError, match="every replica died"):
        list(
            run_batches(
                [Worker.remote(str(tmp_path / "died"), 0)],
                lambda: None,
                range(3),
                lambda a, i: a.run.remote(i),
                max_replacements=0,
            )
        )


def test_a_sampler_error_names_the_batch_and_the_error(local_ray):
    @local_ray.remote(num_cpus=0.5)
    class Broken:
        def run(self, index):
            if index == 2:
                raise ValueError("block has NaN for unit 7")
            return index

    with pytest.raises(DispatchError, match=r"batch 2 failed in a replica: ValueError: block has NaN for unit 7"):
        list(run_batches([Broken.remote()], lambda: None, range(4), lambda a, i: a.run.remote(i)))
