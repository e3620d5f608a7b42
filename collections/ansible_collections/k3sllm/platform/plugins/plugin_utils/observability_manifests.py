"""The monitoring stack's objects, built as data (roles/observability renders them with the
``k3sllm.platform.observability_stack_objects`` and ``k3sllm.platform.observability_content_objects``
filters).

The stack: the monitoring namespace, Grafana's admin Secret and its sidecar's Role, kube-prometheus-stack,
the optional OpenTelemetry collector, and the namespace's ingress policies. The content: one ConfigMap per
Grafana dashboard file and one PrometheusRule per alert rule file, with the TTFT alert's threshold set.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ansible_collections.k3sllm.platform.plugins.plugin_utils import charts
from ansible_collections.k3sllm.platform.plugins.plugin_utils.charts import ChartManifestError

STACK_SETTINGS = (
    "namespace",
    "chart_repo",
    "chart_version",
    "chart_content",
    "image_registry",
    "prometheus_retention",
    "prometheus_retention_size",
    "prometheus_resources",
    "prometheus_storage_size",
    "storage_class",
    "alertmanager_enabled",
    "alertmanager_storage_size",
    "k3s_skip_control_plane_monitors",
    "grafana_hostname",
    "grafana_ingress",
    "grafana_admin_user",
    "grafana_admin_password",
    "grafana_admin_secret",
    "grafana_sidecar_role",
    "grafana_dashboard_label",
    "grafana_dashboard_label_value",
    "otel_collector_enabled",
    "otel_chart_repo",
    "otel_chart_version",
    "otel_image_repository",
    "otel_command",
    "otel_traces_endpoint",
    "otel_traces_insecure",
    "network_policies",
    "ingress_namespace",
    "api_server_cidrs",
    "platform_namespace",
    "values_extra",
    "otel_values_extra",
)
CONTENT_SETTINGS = (
    "namespace",
    "grafana_dashboard_label",
    "grafana_dashboard_label_value",
    "grafana_dashboard_folder",
    "ttft_p95_seconds",
    "dashboards",
    "alerts",
)
# K3s runs these inside its own process, where the chart's scrape targets cannot reach them.
K3S_EMBEDDED_COMPONENTS = ("kubeControllerManager", "kubeScheduler", "kubeProxy", "kubeEtcd")
# Grafana's own UID (the image's grafana user); the other components keep the chart's restricted defaults.
GRAFANA_UID = 472
OTEL_UID = 10001
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
TTFT_ALERT = "K3sllmVllmTtftP95High"
# The alert's threshold is the number its expression ends with; its annotations say it in words.
TTFT_EXPR_THRESHOLD = re.compile(r">\s*[0-9.]+\s*$")
TTFT_TEXT_THRESHOLD = re.compile(r"above [0-9.]+( ?(s|seconds))\b")
# An image reference's first segment is a registry host when it holds a dot (ghcr.io, quay.io, ...).
REGISTRY_HOST = re.compile(r"^[^/]+\.[^/]+/")


def kps_archive(version: str) -> str:
    return f"kube-prometheus-stack-{version}.tgz"


def otel_archive(version: str) -> str:
    return f"opentelemetry-collector-{version}.tgz"


def _claim(storage_class: str, size: str) -> dict[str, Any]:
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            }
        }
    }


def grafana_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Grafana: admin from our Secret, a namespaced sidecar on our Role, restricted pods, ingress per setting."""
    namespace_name = settings["namespace"]
    hostname = settings["grafana_hostname"]
    ingress: dict[str, Any] = {"enabled": False}
    if charts.flag(settings, "grafana_ingress", "observability_grafana_ingress"):
        ingress = {
            "enabled": True,
            "ingressClassName": "traefik",
            "hosts": [hostname],
            "path": "/",
            "tls": [{"hosts": [hostname]}],
        }
    return {
        "admin": {
            "existingSecret": settings["grafana_admin_secret"],
            "userKey": "admin-user",
            "passwordKey": "admin-password",
        },
        "rbac": {"namespaced": True, "useExistingRole": settings["grafana_sidecar_role"]},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": GRAFANA_UID,
            "runAsGroup": GRAFANA_UID,
            "fsGroup": GRAFANA_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": copy.deepcopy(RESTRICTED_CONTAINER),
        "extraEmptyDirMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "initChownData": {"enabled": False},
        "testFramework": {"enabled": False},
        "sidecar": {
            "securityContext": copy.deepcopy(RESTRICTED_CONTAINER),
            "dashboards": {
                "enabled": True,
                "label": settings["grafana_dashboard_label"],
                "labelValue": settings["grafana_dashboard_label_value"],
                "searchNamespace": [namespace_name],
                "resource": "configmap",
                "folderAnnotation": "grafana_folder",
                "provider": {"foldersFromFilesStructure": True},
            },
            "datasources": {"searchNamespace": [namespace_name], "resource": "configmap"},
        },
        "ingress": ingress,
    }


def stack_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """kube-prometheus-stack's values: every selector open, retention and volumes, Grafana, K3s's embedded
    components unmonitored, the mirror, then the extras."""
    storage_class = settings["storage_class"]
    values: dict[str, Any] = {
        "crds": {"enabled": True},
        "prometheus": {
            "prometheusSpec": {
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "retention": settings["prometheus_retention"],
                "retentionSize": settings["prometheus_retention_size"],
                "resources": copy.deepcopy(settings["prometheus_resources"]),
                "storageSpec": _claim(storage_class, settings["prometheus_storage_size"]),
            }
        },
        "alertmanager": {
            "enabled": charts.flag(settings, "alertmanager_enabled", "observability_alertmanager_enabled"),
            "alertmanagerSpec": {"storage": _claim(storage_class, settings["alertmanager_storage_size"])},
        },
        "grafana": grafana_values(settings),
    }
    if charts.flag(
        settings, "k3s_skip_control_plane_monitors", "observability_k3s_skip_control_plane_monitors"
    ):
        for component in K3S_EMBEDDED_COMPONENTS:
            values[component] = {"enabled": False}
    mirror = charts.registry(settings["image_registry"])
    if mirror:
        values["global"] = {"imageRegistry": mirror}
    return charts.deep_merge(values, charts.mapping(settings, "values_extra", "observability_values_extra"))


def otel_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The collector: OTLP in (gRPC and HTTP on the pod's address), traces out to the endpoint, or logged."""
    mirror = charts.registry(settings["image_registry"])
    image = str(settings["otel_image_repository"])
    if mirror:
        image = f"{mirror}/{REGISTRY_HOST.sub('', image)}"
    endpoint = settings["otel_traces_endpoint"]
    exporters: dict[str, Any] = {"debug": {}}
    if endpoint:
        insecure = charts.flag(settings, "otel_traces_insecure", "observability_otel_traces_insecure")
        exporters = {"otlp": {"endpoint": endpoint, "tls": {"insecure": insecure}}}
    values = {
        "mode": "deployment",
        "image": {"repository": image},
        "command": {"name": settings["otel_command"]},
        "podSecurityContext": {
            "runAsNonRoot": True,
            "runAsUser": OTEL_UID,
            "runAsGroup": OTEL_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "config": {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": "${env:MY_POD_IP}:4317"},
                        "http": {"endpoint": "${env:MY_POD_IP}:4318"},
                    }
                }
            },
            "exporters": exporters,
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["memory_limiter", "batch"],
                        "exporters": list(exporters),
                    }
                }
            },
        },
    }
    return charts.deep_merge(
        values, charts.mapping(settings, "otel_values_extra", "observability_otel_values_extra")
    )


def network_policies(settings: Mapping[str, Any], with_collector: bool) -> list[dict[str, Any]]:
    """Default-deny ingress, then what each component needs."""
    namespace_name = settings["namespace"]

    def pods(name: str) -> dict[str, Any]:
        return {"matchLabels": {"app.kubernetes.io/name": name}}

    policies = [
        charts.default_deny_ingress(namespace_name),
        # Prometheus scrapes every exporter here and sends alerts to Alertmanager.
        charts.network_policy(
            "allow-prometheus-scrape", namespace_name, {}, [{"from": [{"podSelector": pods("prometheus")}]}]
        ),
        # Grafana queries Prometheus and Alertmanager (its two datasources), nothing else.
        charts.network_policy(
            "allow-grafana-datasources",
            namespace_name,
            {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/name",
                        "operator": "In",
                        "values": ["prometheus", "alertmanager"],
                    }
                ]
            },
            [{"from": [{"podSelector": pods("grafana")}], "ports": charts.tcp_ports(9090, 9093)}],
        ),
        # Alertmanager replicas gossip among themselves.
        charts.network_policy(
            "allow-alertmanager-cluster",
            namespace_name,
            pods("alertmanager"),
            [
                {
                    "from": [{"podSelector": pods("alertmanager")}],
                    "ports": [{"port": 9094, "protocol": "TCP"}, {"port": 9094, "protocol": "UDP"}],
                }
            ],
        ),
        # Only the API server calls the Prometheus Operator's admission webhook (10250, pod port).
        charts.from_api_server(
            "allow-operator-webhook",
            namespace_name,
            {"app.kubernetes.io/component": "prometheus-operator"},
            settings["api_server_cidrs"],
            10250,
        ),
        # Traefik reaches Grafana only.
        charts.network_policy(
            "allow-ingress-to-grafana",
            namespace_name,
            pods("grafana"),
            [
                {
                    "from": [
                        charts.pods_in(settings["ingress_namespace"], {"app.kubernetes.io/name": "traefik"})
                    ],
                    "ports": charts.tcp_ports(3000),
                }
            ],
        ),
    ]
    if with_collector:
        # The engines in the platform namespace send traces to the collector.
        policies.append(
            charts.network_policy(
                "allow-traces-to-collector",
                namespace_name,
                pods("opentelemetry-collector"),
                [
                    {
                        "from": [
                            charts.pods_in(settings["platform_namespace"], {"app.kubernetes.io/name": "vllm"})
                        ],
                        "ports": charts.tcp_ports(4317, 4318),
                    }
                ],
            )
        )
    return policies


def stack_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Namespace, Grafana's admin Secret and sidecar Role, the charts and the NetworkPolicies, in apply order."""
    charts.require(settings, STACK_SETTINGS, "observability_stack_objects")
    namespace_name = settings["namespace"]
    archives = charts.mapping(
        settings, "chart_content", "chart_content (the archives read from observability_chart_dir)"
    )
    with_collector = charts.flag(settings, "otel_collector_enabled", "observability_otel_collector_enabled")
    objects = [
        # node-exporter mounts host paths and uses the host network.
        charts.namespace(namespace_name, "privileged"),
        # Grafana reads its admin credentials from here (admin.existingSecret); the chart never sees them.
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": settings["grafana_admin_secret"], "namespace": namespace_name},
            "type": "Opaque",
            "stringData": {
                "admin-user": settings["grafana_admin_user"],
                "admin-password": str(settings["grafana_admin_password"]).strip(),
            },
        },
        # What Grafana's sidecars may read (the chart binds it: rbac.useExistingRole): ConfigMaps here. The
        # chart's own role would add every Secret here (and, unless namespaced, in the whole cluster).
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": settings["grafana_sidecar_role"], "namespace": namespace_name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}],
        },
        charts.helm_chart(
            "kube-prometheus-stack",
            namespace_name,
            stack_values(settings),
            repo=settings["chart_repo"],
            version=settings["chart_version"],
            content=str(archives.get(kps_archive(settings["chart_version"]), "")),
        ),
    ]
    if with_collector:
        # Receives vLLM's traces (OTLP) and forwards them to the trace backend.
        objects.append(
            charts.helm_chart(
                "opentelemetry-collector",
                namespace_name,
                otel_values(settings),
                repo=settings["otel_chart_repo"],
                version=settings["otel_chart_version"],
                content=str(archives.get(otel_archive(settings["otel_chart_version"]), "")),
            )
        )
    if charts.flag(settings, "network_policies", "observability_network_policies"):
        objects += network_policies(settings, with_collector)
    return objects


def threshold_text(seconds: Any) -> str:
    """The TTFT threshold as the rules write it: whole seconds without a decimal point (5, not 5.0)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError) as exc:
        raise ChartManifestError(
            f"observability_vllm_ttft_p95_seconds is {seconds!r}: set the p95 time to first token in seconds"
        ) from exc
    if not math.isfinite(value) or value <= 0:
        raise ChartManifestError(
            f"observability_vllm_ttft_p95_seconds is {seconds!r}: set a positive number of seconds"
        )
    return str(int(value)) if value.is_integer() else str(value)


def set_ttft_threshold(groups: Sequence[Mapping[str, Any]], text: str) -> list[dict[str, Any]]:
    """A copy of the rule groups with the TTFT alert's threshold (expression and wording) set to ``text``."""
    result = copy.deepcopy([dict(group) for group in groups])
    for group in result:
        for rule in group.get("rules") or []:
            if rule.get("alert", "") != TTFT_ALERT:
                continue
            rule["expr"] = TTFT_EXPR_THRESHOLD.sub(f"> {text}", str(rule["expr"]))
            annotations = rule.get("annotations") or {}
            for key, wording in annotations.items():
                annotations[key] = TTFT_TEXT_THRESHOLD.sub(
                    lambda match: f"above {text}{match.group(1)}", str(wording)
                )
    return result


def object_name(prefix: str, stem: str) -> str:
    """A file's stem as an object name: lower case, every run of other characters one dash."""
    return prefix + re.sub(r"[^a-z0-9]+", "-", stem.lower())


def _files(settings: Mapping[str, Any], key: str, variable: str) -> Mapping[str, str]:
    files = settings[key]
    if not isinstance(files, Mapping):
        raise ChartManifestError(
            f"{variable}: expected a mapping of file name to text, not {type(files).__name__}"
        )
    return files


def dashboard_config_map(settings: Mapping[str, Any], file_name: str, text: str) -> dict[str, Any]:
    stem = re.sub(r"\.json$", "", file_name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": object_name("k3sllm-dashboard-", stem),
            "namespace": settings["namespace"],
            "labels": {settings["grafana_dashboard_label"]: str(settings["grafana_dashboard_label_value"])},
            "annotations": {"grafana_folder": settings["grafana_dashboard_folder"]},
        },
        "data": {f"{stem}.json": text},
    }


def prometheus_rule(settings: Mapping[str, Any], file_name: str, text: str, threshold: str) -> dict[str, Any]:
    stem = re.sub(r"\.ya?ml$", "", file_name)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ChartManifestError(
            f"alert rule file {file_name} (observability_alerts_dir) is not YAML: {exc}"
        ) from exc
    if document is not None and not isinstance(document, Mapping):
        raise ChartManifestError(
            f"alert rule file {file_name} (observability_alerts_dir) must hold a mapping"
        )
    groups = (document or {}).get("groups") or []
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": object_name("k3sllm-", stem), "namespace": settings["namespace"]},
        "spec": {"groups": set_ttft_threshold(groups, threshold)},
    }


def content_objects(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard (file name to JSON text) and one PrometheusRule per alert rule file (file name
    to YAML text), each in the order given."""
    charts.require(settings, CONTENT_SETTINGS, "observability_content_objects")
    threshold = threshold_text(settings["ttft_p95_seconds"])
    dashboards = _files(settings, "dashboards", "observability_dashboards_dir")
    alerts = _files(settings, "alerts", "observability_alerts_dir")
    return [dashboard_config_map(settings, name, text) for name, text in dashboards.items()] + [
        prometheus_rule(settings, name, text, threshold) for name, text in alerts.items()
    ]
