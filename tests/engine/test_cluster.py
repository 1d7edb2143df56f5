"""A real two-node Ray cluster on loopback with token authentication: `vtrial run --address` spreads the
work over both nodes."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# Two Ray nodes on 127.0.0.1, held by a helper process until its stdin closes. Ray's own test cluster
# (ray.cluster_utils) is used because `ray start --node-ip-address=127.0.0.1` on Linux swaps loopback for
# the machine's routable address, and with that turned off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) refuses
# to add a second node.
CLUSTER = """
import sys
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
c.add_node(num_cpus=1)
print(c.address, flush=True)
sys.stdin.read()
c.shutdown()
"""


@pytest.fixture(scope="module")
def cluster():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # token authentication stays on: every process of the cluster and the driver share one token
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        address = holder.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), holder.stderr.read()[-3000:] if holder.poll() is not None else address
        yield address, env, holder
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            holder.kill()


def test_run_with_address_uses_both_nodes(cluster, tmp_path):
    address, env, _ = cluster
    proto = {
        "name": "two-nodes",
        "seed": 3,
        "cohort": {"population": "healthy_adults", "size": 8},
        "arms": [
            {"name": "placebo", "placebo": True},
            {"name": "verapamil", "drugs": [{"drug": "verapamil", "dose": {"value": 120, "unit": "mg"}}]},
        ],
        "schedule": {"times_h": [-0.5, 1.0, 2.0]},
        "sampling": {"samples_per_patient": 4, "sampler": "mechanistic"},
        "compute": {"replicas": 2, "cpus_per_replica": 1, "batch_size": 4},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(proto))
    out = tmp_path / "out"
    res = subprocess.run(
        [str(BIN / "vtrial"), "run", str(path), "--out", str(out), "--address", address, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["address"] == address
    assert len(info["batches_by_node"]) == 2, info  # one single-CPU replica on each node
    assert sum(info["batches_by_node"].values()) == info["batches"]


def test_cluster_servers_listen_on_loopback_only(cluster, assert_loopback_only):
    import psutil

    servers = psutil.Process(cluster[2].pid).children(recursive=True)
    assert any("gcs_server" in " ".join(p.cmdline()) for p in servers), "no Ray server processes found"
    assert_loopback_only(servers)


def test_an_address_that_is_not_ray_is_refused_within_seconds():
    """A TCP service that is not Ray (here an HTTP/1 server on loopback) once made ray.init wait > 400 s."""
    import http.server
    import threading
    import time

    from vtrial.engine.cluster import ClusterError, check_reachable

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ClusterError, match="answers, but not as a Ray cluster"):
            check_reachable(f"127.0.0.1:{httpd.server_address[1]}")
        assert time.monotonic() - t0 < 10
    finally:
        httpd.shutdown()
