"""A node's K3s config.yaml flags, built directly from the k3s role's settings."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.k3s import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import k3s_config

FIRST_SERVER = {
    "node_name": "cp1",
    "is_server": True,
    "is_first_server": True,
    "server_count": 1,
    "join_address": "192.0.2.10",
    "api_port": 6443,
    "uses_token_file": False,
    "token_file": "/etc/rancher/k3s/token",
    "write_kubeconfig_mode": "0600",
    "tls_san": ["llm.example.com", "192.0.2.10"],
    "cluster_cidr": "10.42.0.0/16",
    "service_cidr": "10.43.0.0/16",
    "disable": [],
    "node_labels": [],
    "node_taints": [],
    "kubelet_args": [],
    "nvidia_default_runtime": False,
    "server_config": {},
    "agent_config": {},
}
AGENT = {
    **FIRST_SERVER,
    "node_name": "gpu1",
    "is_server": False,
    "is_first_server": False,
    "uses_token_file": True,
}


def flags(base: dict | None = None, **overrides: object) -> dict:
    return FilterModule().filters()["k3s_config_flags"]({**(base or FIRST_SERVER), **overrides})


def test_single_server_is_the_simple_path():
    assert flags() == {
        "node-name": "cp1",
        "write-kubeconfig-mode": "0600",
        "tls-san": ["llm.example.com", "192.0.2.10"],
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
    }


@pytest.mark.parametrize(("count", "cluster_init"), [(1, False), (2, True), (3, True)])
def test_first_of_several_servers_starts_embedded_etcd(count, cluster_init):
    assert ("cluster-init" in flags(server_count=count)) is cluster_init
    if cluster_init:
        assert flags(server_count=count)["cluster-init"] is True


def test_other_servers_join_the_first_with_the_token_file():
    server = flags(node_name="cp2", is_first_server=False, server_count=3, uses_token_file=True)
    assert "cluster-init" not in server
    assert server["server"] == "https://192.0.2.10:6443"
    assert server["token-file"] == "/etc/rancher/k3s/token"
    assert server["cluster-cidr"] == "10.42.0.0/16"


def test_agent_carries_agent_flags_only():
    assert flags(AGENT, node_labels=["k3sllm.io/gpu-node=true"], disable=["traefik"]) == {
        "node-name": "gpu1",
        "server": "https://192.0.2.10:6443",
        "token-file": "/etc/rancher/k3s/token",
        "node-label": ["k3sllm.io/gpu-node=true"],
    }


@pytest.mark.parametrize(
    ("address", "port", "url"),
    [
        ("192.0.2.10", 6443, "https://192.0.2.10:6443"),
        ("api.llm.example.com", 7443, "https://api.llm.example.com:7443"),
        ("2001:db8::10", 6443, "https://[2001:db8::10]:6443"),
        ("[2001:db8::10]", 6443, "https://[2001:db8::10]:6443"),
        ("::1", 6443, "https://[::1]:6443"),
    ],
)
def test_join_address_ipv4_name_and_ipv6(address, port, url):
    assert flags(AGENT, join_address=address, api_port=port)["server"] == url
    assert k3s_config.server_url(address, port) == url


def test_first_server_with_a_token_setting_uses_the_token_file():
    assert flags(uses_token_file=True)["token-file"] == "/etc/rancher/k3s/token"
    assert "token-file" not in flags()


def test_list_flags_appear_when_set_in_order():
    server = flags(
        disable=["traefik", "servicelb"],
        node_labels=["a=b"],
        node_taints=["node-role.kubernetes.io/control-plane=true:NoSchedule"],
        kubelet_args=["max-pods=250"],
        nvidia_default_runtime=True,
    )
    assert list(server) == [
        "node-name",
        "write-kubeconfig-mode",
        "tls-san",
        "cluster-cidr",
        "service-cidr",
        "disable",
        "node-label",
        "node-taint",
        "kubelet-arg",
        "default-runtime",
    ]
    assert server["disable"] == ["traefik", "servicelb"]
    assert server["default-runtime"] == "nvidia"
    assert flags(AGENT, nvidia_default_runtime=True)["default-runtime"] == "nvidia"


@pytest.mark.parametrize(
    ("base", "expected_extra"),
    [
        (FIRST_SERVER, {"etcd-s3": True, "write-kubeconfig-mode": "0644"}),
        (AGENT, {"node-ip": "192.0.2.20"}),
    ],
)
def test_server_or_agent_config_comes_last_and_wins(base, expected_extra):
    built = flags(
        base,
        server_config={"etcd-s3": True, "write-kubeconfig-mode": "0644"},
        agent_config={"node-ip": "192.0.2.20"},
    )
    for key, value in expected_extra.items():
        assert built[key] == value
    other = {"node-ip"} if base is FIRST_SERVER else {"etcd-s3"}
    assert not other & set(built)
    if base is FIRST_SERVER:  # a replaced flag keeps its place, a new one comes last
        assert list(built)[:2] == ["node-name", "write-kubeconfig-mode"]
        assert list(built)[-1] == "etcd-s3"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"node_labels": "a=b"}, "k3s_node_labels is 'a=b': set a list"),
        ({"server_config": ["x"]}, "k3s_server_config is \\['x'\\]: set a mapping"),
        ({"is_server": "yes"}, "is_server is 'yes', not true or false"),
    ],
)
def test_bad_settings_name_the_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        flags(**override)


def test_a_setting_the_role_forgot_is_named():
    with pytest.raises(AnsibleFilterError, match="settings lack api_port"):
        FilterModule().filters()["k3s_config_flags"](
            {k: v for k, v in FIRST_SERVER.items() if k != "api_port"}
        )


# K3s's k3s.yaml as the server writes it (keys shortened).
K3S_YAML = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
"""


def controller_kubeconfig(*args):
    return FilterModule().filters()["k3s_controller_kubeconfig"](*args)


@pytest.mark.parametrize(
    ("address", "port", "server"),
    [
        ("192.0.2.10", 6443, "https://192.0.2.10:6443"),
        ("llm.example.com", "16443", "https://llm.example.com:16443"),  # -e strings
        ("2001:db8::10", 6443, "https://[2001:db8::10]:6443"),
        ("[2001:db8::10]", 6443, "https://[2001:db8::10]:6443"),
    ],
)
def test_kubeconfig_points_at_the_api_address_and_keeps_the_rest(address, port, server):
    written = yaml.safe_load(controller_kubeconfig(K3S_YAML, address, port))
    original = yaml.safe_load(K3S_YAML)
    assert written["clusters"][0]["cluster"]["server"] == server
    written["clusters"][0]["cluster"]["server"] = original["clusters"][0]["cluster"]["server"]
    assert written == original


def test_kubeconfig_is_written_the_same_every_run():
    once = controller_kubeconfig(K3S_YAML, "192.0.2.10", 6443)
    assert controller_kubeconfig(once, "192.0.2.10", 6443) == once


def test_every_cluster_entry_is_pointed_at_the_server():
    two = yaml.safe_load(K3S_YAML)
    two["clusters"].append({"name": "other", "cluster": {"server": "https://127.0.0.1:6444"}})
    written = yaml.safe_load(controller_kubeconfig(yaml.safe_dump(two), "192.0.2.10", 6443))
    assert [c["cluster"]["server"] for c in written["clusters"]] == ["https://192.0.2.10:6443"] * 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "k3s.yaml has no clusters: entries"),
        ("kind: Config\nclusters: []\n", "k3s.yaml has no clusters: entries"),
        ("clusters:\n- name: default\n", "k3s.yaml has no clusters: entries"),
        ("clusters: [\n", "k3s.yaml is not YAML"),
    ],
)
def test_a_kubeconfig_without_clusters_is_refused_with_where_to_look(text, message):
    with pytest.raises(AnsibleFilterError, match=message):
        controller_kubeconfig(text, "192.0.2.10", 6443)
