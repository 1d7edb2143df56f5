"""The deployment files' structure (no cluster needed): kinds, the command they run, token authentication,
and no Ray port exposed beyond the cluster's own network."""

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from vtrial.data import example_protocols

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RAY_PORTS = {6379, 8265, 10001}


def load(name):
    return list(yaml.safe_load_all((DEPLOY / name).read_text()))


def containers(pod_template):
    return pod_template["spec"]["containers"]


def ray_cluster_specs():
    (rc,) = load("kuberay/raycluster.yaml")
    (rj,) = load("kuberay/rayjob.yaml")
    return {"raycluster": rc["spec"], "rayjob": rj["spec"]["rayClusterSpec"]}


def all_pod_templates(spec):
    yield spec["headGroupSpec"]["template"]
    for g in spec["workerGroupSpecs"]:
        yield g["template"]


def test_kinds_and_api_versions():
    (rc,) = load("kuberay/raycluster.yaml")
    (rj,) = load("kuberay/rayjob.yaml")
    (pvc,) = load("kuberay/storage.yaml")
    (np_,) = load("kuberay/networkpolicy.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rj["apiVersion"], rj["kind"]) == ("ray.io/v1", "RayJob")
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert (np_["apiVersion"], np_["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    for doc in (rc, rj, pvc, np_):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_token_authentication_is_on(which):
    spec = ray_cluster_specs()[which]
    assert spec["authOptions"]["mode"] == "token"
    major, minor, *_ = (int(x) for x in spec["rayVersion"].split("."))
    assert (major, minor) >= (2, 52), "token authentication needs Ray 2.52 or newer"
    for tpl in all_pod_templates(spec):
        for c in containers(tpl):
            for e in c.get("env", []):
                assert not (e["name"] == "RAY_AUTH_MODE" and e.get("value") != "token")
                assert not (e["name"] == "RAY_AUTH_TOKEN" and "value" in e), "a token in plain text"


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_ray_ports_stay_inside_the_cluster(which):
    spec = ray_cluster_specs()[which]
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False)
    for tpl in all_pod_templates(spec):
        assert not tpl["spec"].get("hostNetwork", False)
        for c in containers(tpl):
            assert all("hostPort" not in p for p in c.get("ports", []))
    (policy,) = load("kuberay/networkpolicy.yaml")
    labels = head["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    for rule in policy["spec"]["ingress"] + policy["spec"]["egress"]:
        for peer in rule.get("from", []) + rule.get("to", []):
            assert "ipBlock" not in peer, "Ray's ports open to an address range"
            assert peer.get("podSelector", {}).get("matchLabels"), "every peer chosen by a pod label"
    if which == "rayjob":  # the submitter talks to the dashboard: it must carry the cluster's label
        (rj,) = load("kuberay/rayjob.yaml")
        sub = rj["spec"]["submitterPodTemplate"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= sub.items()


@pytest.mark.parametrize("which", ["raycluster", "rayjob"])
def test_gpu_workers_and_shared_run_folder(which):
    spec = ray_cluster_specs()[which]
    (pvc,) = load("kuberay/storage.yaml")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the driver only
    (c,) = containers(head["template"])
    (mount,) = c["volumeMounts"]
    vols = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    assert vols[mount["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    for g in spec["workerGroupSpecs"]:
        (w,) = containers(g["template"])
        assert w["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


def test_rayjob_runs_vtrial_on_a_shipped_protocol_into_the_volume():
    (rj,) = load("kuberay/rayjob.yaml")
    args = rj["spec"]["entrypoint"].split()
    assert args[:2] == ["vtrial", "run"]
    assert args[2] in example_protocols(), f"{args[2]} is not an example protocol shipped in the package"
    assert args[args.index("--address") + 1] == "auto"
    assert "--resume" in args  # a resubmitted job finishes what is missing
    out = args[args.index("--out") + 1]
    (c,) = containers(rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
    assert any(out.startswith(m["mountPath"] + "/") for m in c["volumeMounts"])
    from typer.testing import CliRunner

    from vtrial.cli import app

    help_text = CliRunner().invoke(app, ["run", "--help"]).output
    for flag in (a for a in args if a.startswith("--")):
        assert flag in help_text, f"vtrial run has no {flag}"


def test_cluster_launcher_config():
    (cfg,) = load("cluster.yaml")
    for key in (
        "cluster_name",
        "provider",
        "available_node_types",
        "head_node_type",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "docker",
    ):
        assert key in cfg, key
    assert cfg["head_node_type"] in cfg["available_node_types"]
    head_cmd = " ".join(cfg["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_cmd and "RAY_AUTH_MODE=token" in " ".join(cfg["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd
    # the launcher joins run_options into `docker run` as written, without variable substitution: render it
    # as it does and check that the token reaches the container from a file it copies, not from `${...}`
    docker_run = "docker run " + " ".join(cfg["docker"]["run_options"]) + f" {cfg['docker']['image']}"
    assert "${" not in docker_run and "$RAY" not in docker_run, docker_run
    env_file = re.search(r"--env-file (\S+)", docker_run).group(1)
    assert env_file in cfg["file_mounts"], "the env file must be copied to every node by file_mounts"
    assert any(env_file in c and "RAY_AUTH_TOKEN=." in c for c in cfg["initialization_commands"]), "no empty token"
    assert "-p " not in docker_run and "--network=host" not in docker_run
    subnets = {tuple(t["node_config"]["SubnetIds"]) for t in cfg["available_node_types"].values()}
    assert len(subnets) == 1, "every node in one subnet (which pins the VPC)"
    for perm in cfg["provider"]["security_group"]["IpPermissions"]:
        ports = set(range(perm["FromPort"], perm["ToPort"] + 1))
        for r in perm["IpRanges"]:
            net = ipaddress.ip_network(r["CidrIp"])
            assert net.is_private, f"{r['CidrIp']} reaches ports {perm['FromPort']}-{perm['ToPort']} from outside"
            if ports & RAY_PORTS:
                assert net.prefixlen >= 16, "Ray's ports open to more than the cluster's subnet"
            if ports == {22}:
                assert net.prefixlen == 32, "SSH from one admin address, not a network"


def test_dockerfile_variants():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG RAY_IMAGE=rayproject/ray:[\d.]+-py311-cpu$", text, re.M)
    assert re.search(r"^ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu$", text, re.M)
    assert "cu128" in text  # the CUDA variant's build arguments are documented
    assert "RAY_AUTH_MODE=token" in text
    assert "RAY_AUTH_TOKEN=" not in text  # no token in the image
    assert not re.search(r"^EXPOSE", text, re.M)
    for path in re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for p in path.split():
            assert (ROOT / p).exists(), f"Dockerfile copies {p}, which the repository lacks"
    ray_version = re.search(r"ray:([\d.]+)-", text).group(1)
    assert all(s["rayVersion"] == ray_version for s in ray_cluster_specs().values())


def test_the_image_installs_its_dependencies_from_a_lock_file_with_hashes():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r deploy/requirements.lock" in text
    assert re.search(r"pip install --no-cache-dir --no-deps --no-build-isolation \.", text)
    lock = (DEPLOY / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", lock, re.M)
    assert len(pins) > 50
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n\n", 1)[-1].strip())
    for block in blocks:
        if "==" in block.splitlines()[0]:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    names = {n.lower() for n, _ in pins}
    assert not names & {"torch", "triton"} and not any(n.startswith("nvidia-") for n in names)  # torch: its own index
    for dep in ("ray", "mlflow", "polars", "pyarrow", "wfdb", "numpy", "tenacity"):
        assert dep in names, dep
