"""A real two-node Ray cluster on loopback: `vtrial run --address` spreads the work over both nodes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import secrets

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray_bin = BIN / "ray"
    port = free_port()
    tmp = tmp_path_factory.mktemp("raytmp")
    # token authentication stays on: every process of the cluster and the driver share one token
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--include-dashboard=false",
                    f"--temp-dir={tmp}", *common], check=True, capture_output=True, env=env, timeout=120)
    try:
        subprocess.run([str(ray_bin), "start", f"--address=127.0.0.1:{port}", *common], check=True,
                       capture_output=True, env=env, timeout=120)
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_run_with_address_uses_both_nodes(cluster, tmp_path):
    address, env = cluster
    proto = {
        "name": "two-nodes", "seed": 3,
        "cohort": {"population": "healthy_adults", "size": 8},
        "arms": [{"name": "placebo", "placebo": True},
                 {"name": "verapamil", "drugs": [{"drug": "verapamil", "dose": {"value": 120, "unit": "mg"}}]}],
        "schedule": {"times_h": [-0.5, 1.0, 2.0]},
        "sampling": {"samples_per_patient": 4, "sampler": "mechanistic"},
        "compute": {"replicas": 2, "cpus_per_replica": 1, "batch_size": 4},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(proto))
    out = tmp_path / "out"
    res = subprocess.run([str(BIN / "vtrial"), "run", str(path), "--out", str(out), "--address", address, "--quiet"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["address"] == address
    assert len(info["batches_by_node"]) == 2, info  # one single-CPU replica on each node
    assert sum(info["batches_by_node"].values()) == info["batches"]
