"""config.yaml as the k3s role renders it for each node of the example inventories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env

pytestmark = pytest.mark.slow


def render(inventory: Path, out: Path, *extra: str) -> dict[str, dict]:
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "tests/k3s/render.yml"),
            "-e",
            f"k3s_render_dir={out}",
            *extra,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        p.name.removesuffix(".config.yaml"): yaml.safe_load(p.read_text()) for p in out.glob("*.config.yaml")
    }


@pytest.fixture(scope="module")
def ha(tmp_path_factory) -> dict[str, dict]:
    return render(REPO / "inventories/example-ha", tmp_path_factory.mktemp("ha"))


def test_every_node_is_rendered(ha):
    assert sorted(ha) == ["cp1", "cp2", "cp3", "gpu1"]


def test_first_server_starts_the_embedded_etcd(ha):
    cp1 = ha["cp1"]
    assert cp1["cluster-init"] is True
    assert "server" not in cp1
    # No k3s_token in the example: the first server generates it, so it needs no token file.
    assert "token-file" not in cp1
    assert cp1["node-name"] == "cp1"
    assert cp1["tls-san"] == ["llm.example.com", "api.llm.example.com"]
    assert cp1["write-kubeconfig-mode"] == "0600"
    assert cp1["node-taint"] == ["node-role.kubernetes.io/control-plane=true:NoSchedule"]


@pytest.mark.parametrize("name", ["cp2", "cp3"])
def test_other_servers_join_the_first(ha, name):
    server = ha[name]
    assert "cluster-init" not in server
    assert server["server"] == "https://api.llm.example.com:6443"
    assert server["token-file"] == "/etc/rancher/k3s/token"
    assert "token" not in server
    assert server["tls-san"] == ["llm.example.com", "api.llm.example.com"]
    assert server["node-taint"] == ["node-role.kubernetes.io/control-plane=true:NoSchedule"]


def test_agent_joins_with_agent_settings_only(ha):
    agent = ha["gpu1"]
    assert agent == {
        "node-name": "gpu1",
        "server": "https://api.llm.example.com:6443",
        "token-file": "/etc/rancher/k3s/token",
        "node-label": ["k3sllm.io/gpu-node=true"],
    }


def test_nvidia_runtime_becomes_the_default_where_detected(tmp_path):
    nodes = render(REPO / "inventories/example-ha", tmp_path, "-e", "k3s_runtime_detected=true")
    assert {name: cfg.get("default-runtime") for name, cfg in nodes.items()} == dict.fromkeys(nodes, "nvidia")


def test_single_node_is_the_simple_path(tmp_path):
    nodes = render(REPO / "inventories/example", tmp_path)
    assert nodes == {
        "gpu1": {
            "node-name": "gpu1",
            "write-kubeconfig-mode": "0600",
            "tls-san": ["llm.example.com", "192.0.2.10"],
            "cluster-cidr": "10.42.0.0/16",
            "service-cidr": "10.43.0.0/16",
            "node-label": ["k3sllm.io/gpu-node=true"],
        }
    }


def test_servers_take_the_cluster_ranges_from_the_one_project_setting(tmp_path):
    # The same settings feed the webhook NetworkPolicies (k3sllm_api_server_cidrs).
    nodes = render(
        REPO / "inventories/example-ha",
        tmp_path,
        "-e",
        "k3sllm_cluster_cidr=10.60.0.0/16",
        "-e",
        "k3sllm_service_cidr=10.61.0.0/16",
    )
    for name in ("cp1", "cp2", "cp3"):
        assert (nodes[name]["cluster-cidr"], nodes[name]["service-cidr"]) == ("10.60.0.0/16", "10.61.0.0/16")
    # Agents take them from the servers; K3s refuses them as agent flags.
    assert "cluster-cidr" not in nodes["gpu1"] and "service-cidr" not in nodes["gpu1"]


def test_token_setting_goes_to_the_token_file_only(tmp_path):
    nodes = render(REPO / "inventories/example-ha", tmp_path, "-e", "k3s_token=s3cret-cluster-token")
    assert all(cfg["token-file"] == "/etc/rancher/k3s/token" for cfg in nodes.values())
    assert "s3cret-cluster-token" not in "".join(p.read_text() for p in tmp_path.iterdir())
