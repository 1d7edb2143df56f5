"""Shared fixtures: where the real data lives, and skips when it is absent."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny world model trained in seconds (shared by the model, sampling and studies tests): (model,
    training history, checkpoint path)."""
    from vtrial.model.checkpoint import save_checkpoint
    from vtrial.model.train import TrainConfig, train

    cfg = TrainConfig(n_pairs=300, latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50,
                      ae_steps=60, diffusion_train_steps=60, batch_size=64, lambda0=0.1)
    model, history = train(cfg, log=lambda d: None)
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return model, history, path


def _listening_addresses(processes) -> set[str]:
    import psutil

    return {c.laddr.ip for p in processes for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def _is_loopback(ip: str) -> bool:
    import ipaddress

    a = ipaddress.ip_address(ip.split("%")[0])
    return (getattr(a, "ipv4_mapped", None) or a).is_loopback


@pytest.fixture
def assert_loopback_only():
    """Check that processes listen only on loopback addresses (127.0.0.1, ::1, ::ffff:127.0.0.1)."""
    def check(processes):
        listening = _listening_addresses(processes)
        assert listening, "no listening sockets found"
        assert all(_is_loopback(ip) for ip in listening), sorted(listening)
    return check


# --- a clean exit -------------------------------------------------------------------------------------
# After every test has run and pytest has printed its summary, the interpreter's teardown runs the static
# destructors of the native libraries loaded in this process (torch, Ray's core worker, BLAS thread pools).
# Their order is not defined, and a clean-clone CI run of this suite once ended "219 passed" followed by a
# segmentation fault in that teardown (a rerun of the same clone exited 0). The exit status is pytest's own,
# computed before the teardown; shut Ray down properly, flush, and leave without the interpreter teardown.
_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import os
    import sys

    if not _EXIT_STATUS or os.environ.get("VTRIAL_PYTEST_TEARDOWN") == "1":
        return  # VTRIAL_PYTEST_TEARDOWN=1: keep the normal interpreter teardown (to debug it)
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS[-1])
