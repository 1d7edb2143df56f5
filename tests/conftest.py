"""Shared fixtures: where the real data lives, and skips when it is absent."""
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data beside the clone)")
    return SHARED_DATA


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
