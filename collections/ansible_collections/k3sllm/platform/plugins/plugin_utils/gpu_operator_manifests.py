"""The NVIDIA GPU Operator's objects, built as data (roles/gpu_operator renders them with the
``k3sllm.platform.gpu_operator_objects`` filter): its namespace, the device plugin's time-slicing
configuration, the chart, and the namespace's ingress policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils import charts
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import ChartManifestError

REQUIRED_SETTINGS = (
    "namespace",
    "chart_repo",
    "chart_version",
    "chart_content",
    "image_registry",
    "manage_toolkit",
    "containerd_config",
    "containerd_socket",
    "runtime_class",
    "time_slicing_replicas",
    "model_count",
    "time_slicing_configmap",
    "time_slicing_config_name",
    "dcgm_scrape_interval",
    "prometheus_namespace",
    "network_policies",
    "values_extra",
)
# The device plugin refuses time-slicing with fewer replicas.
MIN_REPLICAS = 2
# Every operand image is published at nvcr.io/<path>/<image>: a mirror keeps the same paths.
NVCR_PATHS = {
    "operator": "nvidia",
    "validator": "nvidia",
    "devicePlugin": "nvidia",
    "gfd": "nvidia",
    "nodeStatusExporter": "nvidia",
    "sandboxDevicePlugin": "nvidia",
    "driver": "nvidia",
    "toolkit": "nvidia/k8s",
    "dcgmExporter": "nvidia/k8s",
    "dcgm": "nvidia/cloud-native",
    "migManager": "nvidia/cloud-native",
    "gds": "nvidia/cloud-native",
    "gdrcopy": "nvidia/cloud-native",
    "vgpuDeviceManager": "nvidia/cloud-native",
    "vfioManager": "nvidia/cloud-native",
    "kataSandboxDevicePlugin": "nvidia/cloud-native",
    "ccManager": "nvidia/cloud-native",
}
NFD_PATH = "nfd/node-feature-discovery"
DCGM_EXPORTER_PORT = 9400
OPERATOR_METRICS_PORT = 8080


def replicas(settings: Mapping[str, Any]) -> int:
    """nvidia.com/gpu slots per physical GPU: the setting, or (0) one per catalog model, at least 2."""
    wanted = settings["time_slicing_replicas"]
    if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
        raise ChartManifestError(
            f"gpu_operator_time_slicing_replicas is {wanted!r}: set a whole number of slots per GPU, or 0 for one "
            "per catalog model"
        )
    return wanted if wanted > 0 else max(int(settings["model_count"]), MIN_REPLICAS)


def time_slicing_config(slots: int) -> dict[str, Any]:
    """The device plugin's configuration: each GPU advertised as ``slots`` nvidia.com/gpu."""
    return {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {
            "timeSlicing": {
                "renameByDefault": False,
                "failRequestsGreaterThanOne": False,
                "resources": [{"name": "nvidia.com/gpu", "replicas": slots}],
            }
        },
    }


def chart_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's values: host-installed driver, toolkit per setting, DCGM scraped, mirror, then the extras."""
    manage_toolkit = charts.flag(settings, "manage_toolkit", "gpu_operator_manage_toolkit")
    toolkit: dict[str, Any] = {"enabled": manage_toolkit}
    if manage_toolkit:
        # K3s keeps its own containerd: the toolkit must edit K3s's config and talk to its socket.
        toolkit["env"] = [
            {"name": "CONTAINERD_CONFIG", "value": settings["containerd_config"]},
            {"name": "CONTAINERD_SOCKET", "value": settings["containerd_socket"]},
            {"name": "CONTAINERD_RUNTIME_CLASS", "value": settings["runtime_class"]},
        ]
    values: dict[str, Any] = {
        "driver": {"enabled": False},
        "toolkit": toolkit,
        "operator": {"runtimeClass": settings["runtime_class"]},
        "devicePlugin": {
            "config": {
                "name": settings["time_slicing_configmap"],
                "default": settings["time_slicing_config_name"],
                "create": False,
            }
        },
        "dcgmExporter": {
            "enabled": True,
            "serviceMonitor": {
                "enabled": True,
                "interval": settings["dcgm_scrape_interval"],
                "honorLabels": False,
            },
        },
    }
    mirror = charts.registry(settings["image_registry"])
    if mirror:
        for component, path in NVCR_PATHS.items():
            values[component] = {**values.get(component, {}), "repository": f"{mirror}/{path}"}
        values["node-feature-discovery"] = {"image": {"repository": f"{mirror}/{NFD_PATH}"}}
    return charts.deep_merge(values, charts.mapping(settings, "values_extra", "gpu_operator_values_extra"))


def network_policies(namespace_name: str, prometheus_namespace: str) -> list[dict[str, Any]]:
    """Default-deny ingress; the operator, its validators and node-feature-discovery talk among themselves,
    and Prometheus's own pods scrape the DCGM exporter and the operator."""
    return [
        charts.default_deny_ingress(namespace_name),
        charts.network_policy(
            "allow-namespace-and-prometheus",
            namespace_name,
            {},
            [
                {"from": [{"podSelector": {}}]},
                {
                    "from": [charts.pods_in(prometheus_namespace, charts.PROMETHEUS_POD)],
                    "ports": charts.tcp_ports(DCGM_EXPORTER_PORT, OPERATOR_METRICS_PORT),
                },
            ],
        ),
    ]


def gpu_operator_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Namespace, time-slicing ConfigMap, HelmChart and (when on) the NetworkPolicies, in apply order."""
    charts.require(settings, REQUIRED_SETTINGS, "gpu_operator_objects")
    namespace_name = settings["namespace"]
    objects = [
        # The operands load kernel state, mount host paths and run privileged.
        charts.namespace(namespace_name, "privileged"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": settings["time_slicing_configmap"], "namespace": namespace_name},
            "data": {
                settings["time_slicing_config_name"]: charts.to_yaml(time_slicing_config(replicas(settings)))
            },
        },
        charts.helm_chart(
            "gpu-operator",
            namespace_name,
            chart_values(settings),
            repo=settings["chart_repo"],
            version=settings["chart_version"],
            content=settings["chart_content"],
        ),
    ]
    if charts.flag(settings, "network_policies", "gpu_operator_network_policies"):
        objects += network_policies(namespace_name, settings["prometheus_namespace"])
    return objects
