"""The Ray cluster a trial runs on: connect to one, or start Ray on this machine bound to loopback,
and check that it has the resources the protocol's replicas ask for."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading

import ray
from ray._private import ray_constants

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterError(RuntimeError):
    """A cluster that cannot be reached or cannot hold the replicas, with the reason and the fix."""


def check_reachable(address: str, timeout_s: float = 3.0) -> None:
    """Refuse an address that is not HOST:PORT or 'auto', or that nothing listens on."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"compute.address = {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            grpc = _speaks_grpc(sock, timeout_s)
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    if not grpc:  # ray.init would wait on it for minutes, silently
        raise ClusterError(
            f"{address} answers, but not as a Ray cluster (its GCS speaks gRPC; this service does "
            f"not): check the host and port (`ray status` on the head prints the address)"
        )


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS


def _speaks_grpc(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the service on ``sock`` answers an HTTP/2 connection preface with an HTTP/2 SETTINGS frame,
    as every gRPC server (Ray's GCS among them) does."""
    sock.settimeout(timeout_s)
    try:
        sock.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x4  # frame type SETTINGS


def start_local_ray(**init_kwargs) -> None:
    """Start Ray on this machine with every server bound to 127.0.0.1.

    On Linux Ray replaces a loopback ``node_ip_address`` with the machine's routable address unless its
    cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when Ray is imported), so it is
    turned off here for this process and the Ray processes it starts, and restored afterwards: a later
    connection to a real cluster from this process must see its routable address again.
    """
    saved_env, saved_flag = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            _node_ip_address="127.0.0.1",
            **init_kwargs,
        )
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` (else ``RAY_ADDRESS``, as set for a Ray job's driver) or start Ray locally
    on loopback; True if this call started it (and so should shut it down)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    with _keep_sigterm_handler():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            start_local_ray(num_cpus=num_cpus or os.cpu_count())
    return True


@contextlib.contextmanager
def _keep_sigterm_handler():
    """Ray's core worker installs a C-level SIGTERM handler in the driver that dumps a stack and aborts;
    the caller's own handler (the CLI's, which unwinds the run and shuts Ray down) is put back after it."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGTERM, handler)


def shutdown() -> None:
    ray.shutdown()


def check_resources(compute, replicas: int) -> None:
    """Refuse a protocol's ``compute`` section that the connected cluster cannot hold."""
    c = compute
    res = ray.cluster_resources()
    gpus, cpus = res.get("GPU", 0.0), res.get("CPU", 0.0)
    if c.gpus_per_replica > 0 and gpus < c.gpus_per_replica:
        raise ClusterError(
            f"compute.gpus_per_replica = {c.gpus_per_replica} but the Ray cluster has {gpus:g} GPUs; "
            f"set gpus_per_replica: 0 to run on CPU"
        )
    if c.gpus_per_replica > 0 and gpus < c.gpus_per_replica * replicas:
        raise ClusterError(
            f"compute.replicas = {replicas} × gpus_per_replica = {c.gpus_per_replica} needs "
            f"{c.gpus_per_replica * replicas:g} GPUs; the cluster has {gpus:g}"
        )
    if cpus < c.cpus_per_replica * replicas:
        raise ClusterError(
            f"compute.replicas = {replicas} × cpus_per_replica = {c.cpus_per_replica} needs "
            f"{c.cpus_per_replica * replicas:g} CPUs; the cluster has {cpus:g}"
        )
