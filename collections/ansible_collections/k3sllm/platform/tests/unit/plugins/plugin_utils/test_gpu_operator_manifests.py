"""The GPU Operator's objects, built directly from the role's settings (no render playbook)."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.gpu_operator import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import gpu_operator_manifests as gpu

SETTINGS = {
    "namespace": "gpu-operator",
    "chart_repo": "https://helm.ngc.nvidia.com/nvidia",
    "chart_version": "v26.7.0",
    "chart_content": "",
    "image_registry": "",
    "manage_toolkit": False,
    "containerd_config": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    "containerd_socket": "/run/k3s/containerd/containerd.sock",
    "runtime_class": "nvidia",
    "time_slicing_replicas": 0,
    "model_count": 3,
    "time_slicing_configmap": "k3sllm-time-slicing",
    "time_slicing_config_name": "k3sllm",
    "dcgm_scrape_interval": "15s",
    "prometheus_namespace": "monitoring",
    "network_policies": True,
    "values_extra": {},
}


def build(**overrides: object) -> dict[tuple[str, str], dict]:
    objects = FilterModule().filters()["gpu_operator_objects"]({**SETTINGS, **overrides})
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def chart_values(**overrides: object) -> dict:
    return yaml.safe_load(build(**overrides)[("HelmChart", "gpu-operator")]["spec"]["valuesContent"])


def slots(**overrides: object) -> int:
    config_map = build(**overrides)[("ConfigMap", "k3sllm-time-slicing")]
    config = yaml.safe_load(config_map["data"]["k3sllm"])
    (resource,) = config["sharing"]["timeSlicing"]["resources"]
    assert resource["name"] == "nvidia.com/gpu"
    return int(resource["replicas"])


def test_objects_come_in_apply_order_namespace_first():
    kinds = [o["kind"] for o in gpu.gpu_operator_objects(SETTINGS)]
    assert kinds == ["Namespace", "ConfigMap", "HelmChart", "NetworkPolicy", "NetworkPolicy"]
    labels = build()[("Namespace", "gpu-operator")]["metadata"]["labels"]
    assert labels == {"pod-security.kubernetes.io/enforce": "privileged"}


@pytest.mark.parametrize(
    ("replicas", "model_count", "expected"),
    [
        (0, 3, 3),  # one slot per catalog model
        (0, 1, 2),  # the device plugin's minimum
        (0, 0, 2),
        (5, 3, 5),  # the setting wins
        (1, 7, 1),
    ],
)
def test_time_slicing_slots(replicas, model_count, expected):
    assert slots(time_slicing_replicas=replicas, model_count=model_count) == expected


def test_the_device_plugin_reads_the_time_slicing_configmap():
    built = build(time_slicing_configmap="slices", time_slicing_config_name="cfg")
    assert built[("ConfigMap", "slices")]["metadata"]["namespace"] == "gpu-operator"
    config = yaml.safe_load(built[("ConfigMap", "slices")]["data"]["cfg"])
    assert config["flags"] == {"migStrategy": "none"}
    assert config["sharing"]["timeSlicing"]["renameByDefault"] is False
    values = yaml.safe_load(built[("HelmChart", "gpu-operator")]["spec"]["valuesContent"])
    assert values["devicePlugin"] == {"config": {"name": "slices", "default": "cfg", "create": False}}


@pytest.mark.parametrize(
    ("manage", "expected"),
    [
        (False, {"enabled": False}),
        (
            True,
            {
                "enabled": True,
                "env": [
                    {"name": "CONTAINERD_CONFIG", "value": SETTINGS["containerd_config"]},
                    {"name": "CONTAINERD_SOCKET", "value": SETTINGS["containerd_socket"]},
                    {"name": "CONTAINERD_RUNTIME_CLASS", "value": "nvidia"},
                ],
            },
        ),
    ],
)
def test_toolkit_is_host_installed_or_pointed_at_k3s_containerd(manage, expected):
    values = chart_values(manage_toolkit=manage)
    assert values["toolkit"] == expected
    assert values["driver"] == {"enabled": False}
    assert values["operator"]["runtimeClass"] == "nvidia"


def test_dcgm_exporter_is_scraped_at_the_interval():
    assert chart_values(dcgm_scrape_interval="30s")["dcgmExporter"] == {
        "enabled": True,
        "serviceMonitor": {"enabled": True, "interval": "30s", "honorLabels": False},
    }


def test_without_a_mirror_no_image_is_overridden():
    text = build()[("HelmChart", "gpu-operator")]["spec"]["valuesContent"]
    assert "repository" not in text


@pytest.mark.parametrize("mirror", ["registry.lan:5000", "registry.lan:5000/", "registry.lan:5000///"])
def test_a_mirror_serves_every_operand_under_nvcr_paths(mirror):
    values = chart_values(image_registry=mirror)
    for component, path in gpu.NVCR_PATHS.items():
        assert values[component]["repository"] == f"registry.lan:5000/{path}", component
    assert values["node-feature-discovery"] == {
        "image": {"repository": "registry.lan:5000/nfd/node-feature-discovery"}
    }
    # The mirror adds the repository next to what was set, it does not replace it.
    assert values["operator"]["runtimeClass"] == "nvidia"
    assert values["toolkit"]["enabled"] is False
    assert values["devicePlugin"]["config"]["name"] == "k3sllm-time-slicing"


def test_values_extra_merge_deeply_over_ours_and_replace_lists():
    extra = {
        "dcgmExporter": {"serviceMonitor": {"interval": "60s"}},
        "toolkit": {"env": [{"name": "ONLY", "value": "this"}]},
        "nfd": {"enabled": False},
    }
    values = chart_values(manage_toolkit=True, values_extra=extra)
    assert values["dcgmExporter"]["serviceMonitor"] == {
        "enabled": True,
        "interval": "60s",
        "honorLabels": False,
    }
    assert values["toolkit"] == {"enabled": True, "env": [{"name": "ONLY", "value": "this"}]}
    assert values["nfd"] == {"enabled": False}
    assert list(values)[-1] == "nfd"  # new keys follow ours, as combine(recursive=true) orders them
    assert extra == {  # the inventory's value is not changed
        "dcgmExporter": {"serviceMonitor": {"interval": "60s"}},
        "toolkit": {"env": [{"name": "ONLY", "value": "this"}]},
        "nfd": {"enabled": False},
    }


@pytest.mark.parametrize(
    ("content", "expected_keys"),
    [
        ("", {"chart": "gpu-operator", "repo": SETTINGS["chart_repo"], "version": "v26.7.0"}),
        ("H4sIAAAA", {"chartContent": "H4sIAAAA"}),
    ],
)
def test_chart_comes_from_the_repository_or_the_embedded_archive(content, expected_keys):
    spec = build(chart_content=content)[("HelmChart", "gpu-operator")]["spec"]
    assert {k: spec[k] for k in ("chart", "repo", "version", "chartContent") if k in spec} == expected_keys
    assert spec["targetNamespace"] == "gpu-operator" and spec["createNamespace"] is False


def test_network_policies_admit_the_namespace_and_prometheus_scrapes_only():
    built = build()
    assert built[("NetworkPolicy", "default-deny-ingress")]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    ingress = built[("NetworkPolicy", "allow-namespace-and-prometheus")]["spec"]["ingress"]
    assert ingress == [
        {"from": [{"podSelector": {}}]},
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
            "ports": [{"port": 9400, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],
        },
    ]


def test_network_policies_can_be_left_out():
    assert not [key for key in build(network_policies=False) if key[0] == "NetworkPolicy"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"time_slicing_replicas": -1}, "gpu_operator_time_slicing_replicas is -1"),
        ({"time_slicing_replicas": "3"}, "gpu_operator_time_slicing_replicas is '3'"),
        ({"manage_toolkit": "yes"}, "gpu_operator_manage_toolkit is 'yes': set true or false"),
        ({"network_policies": 1}, "gpu_operator_network_policies is 1"),
        ({"values_extra": ["a"]}, "gpu_operator_values_extra must be a mapping"),
    ],
)
def test_bad_settings_fail_naming_the_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        build(**override)


def test_a_setting_the_role_forgot_is_named():
    settings = {k: v for k, v in SETTINGS.items() if k != "dcgm_scrape_interval"}
    with pytest.raises(AnsibleFilterError, match="gpu_operator_objects: settings lack dcgm_scrape_interval"):
        FilterModule().filters()["gpu_operator_objects"](settings)
