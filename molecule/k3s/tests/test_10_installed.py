"""The converged two-node cluster: files, permissions, service, kubeconfig (after idempotence and check)."""

from __future__ import annotations

import base64

import pytest
import yaml
from k3s_scenario import AGENT, KUBECONFIG, OLD, SERVER, config, installed_version, starts


@pytest.mark.parametrize("which", ["server", "agent"])
def test_pinned_release_is_installed(request, which):
    host = request.getfixturevalue(which)
    binary = host.file("/usr/local/bin/k3s")
    assert binary.user == "root" and binary.mode == 0o755
    assert installed_version(host) == OLD
    images = host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst")
    assert images.mode == 0o644
    assert OLD in images.content_string
    # The verified downloads are removed once installed.
    assert not host.file(f"/var/cache/k3sllm/k3s/{OLD}").exists


@pytest.mark.parametrize("which", ["server", "agent"])
def test_service_runs_and_started_once(request, which):
    host = request.getfixturevalue(which)
    service = host.service("k3s")
    assert service.is_running and service.is_enabled
    # Converge started it; idempotence and check runs must not have restarted it.
    assert starts(host) == [OLD]


def test_server_config(server):
    cfg = config(server)
    assert cfg == {
        "node-name": SERVER,
        "write-kubeconfig-mode": "0600",
        "tls-san": ["llm.molecule.test", SERVER],
        # Servers take the cluster ranges from k3sllm (the webhook NetworkPolicies read the same).
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "disable": ["servicelb"],
        "node-label": ["k3sllm.io/gpu-node=true"],
        "kubelet-arg": ["max-pods=150"],
    }
    f = server.file("/etc/rancher/k3s/config.yaml")
    assert (f.user, f.mode) == ("root", 0o600)
    # One server: no embedded etcd, no join; the token is K3s's own.
    assert not server.file("/etc/rancher/k3s/token").exists


def test_agent_config_joins_the_server_with_its_token(server, agent):
    cfg = config(agent)
    assert cfg == {
        "node-name": AGENT,
        "server": f"https://{SERVER}:6443",
        "token-file": "/etc/rancher/k3s/token",
        "node-label": ["k3sllm.io/gpu-node=true"],
        "kubelet-arg": ["max-pods=150"],
        # The agent has the (stand-in) NVIDIA runtime, the server has not.
        "default-runtime": "nvidia",
    }
    token = agent.file("/etc/rancher/k3s/token")
    assert (token.user, token.mode) == ("root", 0o600)
    assert (
        token.content_string.strip()
        == server.file("/var/lib/rancher/k3s/server/token").content_string.strip()
    )


@pytest.mark.parametrize("which", ["server", "agent"])
def test_registries_unit_and_env_file(request, which):
    host = request.getfixturevalue(which)
    registries = host.file("/etc/rancher/k3s/registries.yaml")
    assert registries.mode == 0o600
    assert yaml.safe_load(registries.content_string) == {
        "mirrors": {"docker.io": {"endpoint": ["https://registry.molecule.test"]}}
    }
    unit = host.file("/etc/systemd/system/k3s.service")
    assert unit.mode == 0o644
    mode = "server" if which == "server" else "agent"
    assert f"ExecStart=/usr/local/bin/k3s {mode}\n" in unit.content_string
    assert "Type=notify" in unit.content_string
    assert "EnvironmentFile=-/etc/systemd/system/k3s.service.env" in unit.content_string
    env = host.file("/etc/systemd/system/k3s.service.env")
    assert (env.user, env.mode) == ("root", 0o600)
    assert 'NO_PROXY="127.0.0.0/8,.molecule.test"' in env.content_string
    # The running service really got it.
    pid = host.check_output("systemctl show -p MainPID --value k3s")
    assert "NO_PROXY=127.0.0.0/8,.molecule.test" in host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")


def test_kubeconfig_on_the_controller_points_at_the_server():
    assert KUBECONFIG.stat().st_mode & 0o777 == 0o600
    assert KUBECONFIG.parent.stat().st_mode & 0o777 == 0o700
    kubeconfig = yaml.safe_load(KUBECONFIG.read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{SERVER}:6443"
    assert kubeconfig["users"][0]["user"]["client-key-data"]


def test_fetched_kubeconfig_works_from_another_node(agent):
    """Use the controller's kubeconfig from the agent: the rewritten name, the certificate SANs and
    the admin credentials all have to be right for this to list both nodes as Ready."""
    kubeconfig = yaml.safe_load(KUBECONFIG.read_text())
    cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
    files = {
        "ca": cluster["certificate-authority-data"],
        "crt": user["client-certificate-data"],
        "key": user["client-key-data"],
    }
    for name, data in files.items():
        agent.run(f"install -m 0600 /dev/null /tmp/kc.{name}")
        assert agent.run(f"echo {data} | base64 -d > /tmp/kc.{name}").rc == 0
    script = (
        "import json, ssl, urllib.request\n"
        "ctx = ssl.create_default_context(cafile='/tmp/kc.ca')\n"
        "ctx.load_cert_chain('/tmp/kc.crt', '/tmp/kc.key')\n"
        f"print(urllib.request.urlopen('{cluster['server']}/api/v1/nodes', context=ctx).read().decode())\n"
    )
    encoded = base64.b64encode(script.encode()).decode()
    result = agent.run(f"echo {encoded} | base64 -d | python3 -")
    agent.run("rm -f /tmp/kc.ca /tmp/kc.crt /tmp/kc.key")
    assert result.rc == 0, result.stderr
    nodes = {
        item["metadata"]["name"]: [c["status"] for c in item["status"]["conditions"] if c["type"] == "Ready"]
        for item in yaml.safe_load(result.stdout)["items"]
    }
    assert nodes == {SERVER: ["True"], AGENT: ["True"]}
