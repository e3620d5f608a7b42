"""The switcher's Kubernetes objects, built as data (roles/model_switcher renders them with the
``k3sllm.platform.switcher_manifests`` filter).

Each builder returns one object from plain settings, so tests check one object without a render.
The switcher runs on the vLLM image as a non-root user with a read-only root filesystem; it never
calls the Kubernetes API, so no ServiceAccount token is mounted. Its metrics and health routes are
served on a port of their own (``metrics_listen``), the only one Prometheus's pods may reach: the
request port's /v1 has no authentication of its own (the gateway in front of it does that).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import (
    ENGINE_SELECTOR,
    SWITCHER_SELECTOR,
    switcher_models,
)

SWITCHER_NAME = "switcher"
SWITCHER_LABELS = {**SWITCHER_SELECTOR, "app.kubernetes.io/part-of": "k3sllm"}

CONFIG_DIR = "/etc/k3sllm-switcher"
CODE_DIR = "/opt/k3sllm/switcher"
TOKEN_DIR = "/var/run/secrets/k3sllm-switcher"
TOKEN_KEY = "admin-token"
CODE_CONFIGMAP = "switcher-code"
CONFIG_CONFIGMAP = "switcher-config"
TOKEN_SECRET = "switcher-admin-token"
CONFIG_HEADER = (
    "# Rendered by roles/model_switcher from the inventory's k3sllm_models; schema in switcher/README.md.\n"
)

REQUIRED_SETTINGS = (
    "namespace",
    "image",
    "port",
    "metrics_port",
    "service_name",
    "engine_port",
    "run_as_user",
    "memory_limit",
    "cpu_request",
    "client_selector",
    "prometheus_namespace",
    "prometheus_selector",
)


class SwitcherManifestError(ValueError):
    """Settings the switcher's objects cannot be built from; the message names the setting."""


def _plain(value: Any) -> Any:
    """Plain dicts, lists, strings and numbers (Ansible hands over tagged subclasses YAML cannot dump)."""
    return json.loads(json.dumps(value))


def _namespace_peer(namespace: str, pod_selector: Mapping[str, str]) -> dict[str, Any]:
    """Pods with these labels in that namespace only (never the whole namespace)."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": dict(pod_selector)},
    }


def _tcp(port: int) -> dict[str, Any]:
    return {"port": int(port), "protocol": "TCP"}


def _meta(name: str, namespace: str, labels: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(SWITCHER_LABELS)
    return meta


def switcher_config(settings: Mapping[str, Any], catalog: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The switcher's config.yaml as a dict: listen address, policy, limits and the models.

    ``catalog`` is the normalised catalog (plugin_utils/catalog.py, ``k3sllm_catalog``): each model's
    switcher entry comes from there. Without the GPU's size the switcher keeps one model awake at a
    time, so the VRAM shares are left out.
    """
    gpu_gib = float(settings.get("gpu_total_vram_gib") or 0)
    policy = dict(settings.get("policy") or {})
    policy["sleep_level"] = settings["sleep_level"]
    policy["sleeping_residual_vram_gib"] = settings["sleeping_residual_vram_gib"]
    if gpu_gib > 0:
        policy["gpu_total_vram_gib"] = gpu_gib
    return {
        "listen": {"host": "0.0.0.0", "port": int(settings["port"])},
        "metrics_listen": {"host": "0.0.0.0", "port": int(settings["metrics_port"])},
        "admin_token_file": f"{TOKEN_DIR}/{TOKEN_KEY}",
        "policy": policy,
        "limits": dict(settings.get("limits") or {}),
        "models": switcher_models(catalog, plan_vram=gpu_gib > 0),
    }


def config_text(config: Mapping[str, Any]) -> str:
    return CONFIG_HEADER + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def code_configmap(settings: Mapping[str, Any], code: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CODE_CONFIGMAP, settings["namespace"], labels=False),
        "data": dict(sorted(code.items())),
    }


def config_configmap(settings: Mapping[str, Any], text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CONFIG_CONFIGMAP, settings["namespace"], labels=False),
        "data": {"config.yaml": text},
    }


def admin_token_secret(settings: Mapping[str, Any], token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(TOKEN_SECRET, settings["namespace"], labels=False),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def config_hash(code: Mapping[str, str], text: str) -> str:
    """Changes when the code or the config does, so the pod rolls."""
    return hashlib.sha256((json.dumps(dict(code), sort_keys=True) + text).encode()).hexdigest()


def deployment(settings: Mapping[str, Any], rollout_hash: str) -> dict[str, Any]:
    uid = int(settings["run_as_user"])
    container = {
        "name": SWITCHER_NAME,
        "image": settings["image"],
        "command": ["python3", "-m", "switcher", "--config", f"{CONFIG_DIR}/config.yaml"],
        "env": [
            {"name": "PYTHONPATH", "value": CODE_DIR.rsplit("/", 1)[0]},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            # The root filesystem is read-only: no bytecode cache, and a writable home for libraries.
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "HOME", "value": "/tmp"},
            # The vLLM image asks for every GPU; the switcher needs none.
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        ],
        "ports": [
            {"name": "http", "containerPort": int(settings["port"])},
            {"name": "metrics", "containerPort": int(settings["metrics_port"])},
        ],
        "resources": {
            "requests": {"cpu": settings["cpu_request"], "memory": "128Mi"},
            "limits": {"memory": settings["memory_limit"]},
        },
        # Health routes are served on the metrics port only.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "admin-token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(SWITCHER_NAME, settings["namespace"]),
        "spec": {
            # One replica owns the GPU's state; a second would switch models behind the first one's back.
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(SWITCHER_LABELS)},
            "template": {
                "metadata": {
                    "labels": dict(SWITCHER_LABELS),
                    "annotations": {"k3sllm.io/config-hash": rollout_hash},
                },
                "spec": {
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": uid,
                        "runAsGroup": uid,
                        # The token file is group-readable by this group only.
                        "fsGroup": uid,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "code", "configMap": {"name": CODE_CONFIGMAP}},
                        {"name": "config", "configMap": {"name": CONFIG_CONFIGMAP}},
                        {"name": "admin-token", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o440}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


def service(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(settings["service_name"], settings["namespace"]),
        "spec": {
            "selector": dict(SWITCHER_LABELS),
            "ports": [
                {"name": "http", "port": int(settings["port"]), "targetPort": "http"},
                {"name": "metrics", "port": int(settings["metrics_port"]), "targetPort": "metrics"},
            ],
        },
    }


def service_monitor(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(SWITCHER_NAME, settings["namespace"]),
        "spec": {
            "selector": {"matchLabels": dict(SWITCHER_LABELS)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def ingress_policy(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The gateway calls the proxy and the engines' init containers ask for boot grants (request port);
    Prometheus's own pods scrape /metrics (metrics port only); nothing else reaches the switcher."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("switcher-ingress", settings["namespace"], labels=False),
        "spec": {
            "podSelector": {"matchLabels": dict(SWITCHER_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": dict(settings["client_selector"])}},
                        {"podSelector": {"matchLabels": dict(ENGINE_SELECTOR)}},
                    ],
                    "ports": [_tcp(settings["port"])],
                },
                {
                    "from": [
                        _namespace_peer(settings["prometheus_namespace"], settings["prometheus_selector"])
                    ],
                    "ports": [_tcp(settings["metrics_port"])],
                },
            ],
        },
    }


def egress_to_engines_policy(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The switcher's only calls: the engines (requests, sleep, wake, health)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("switcher-egress", settings["namespace"], labels=False),
        "spec": {
            "podSelector": {"matchLabels": dict(SWITCHER_LABELS)},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": dict(ENGINE_SELECTOR)}}],
                    "ports": [_tcp(settings["engine_port"])],
                }
            ],
        },
    }


def egress_from_clients_policy(
    settings: Mapping[str, Any], name: str, clients: Mapping[str, str]
) -> dict[str, Any]:
    """Lets the pods selected by ``clients`` call the switcher's port under default-deny egress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, settings["namespace"], labels=False),
        "spec": {
            "podSelector": {"matchLabels": dict(clients)},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": {"matchLabels": dict(SWITCHER_LABELS)}}],
                    "ports": [_tcp(settings["port"])],
                }
            ],
        },
    }


def check_settings(settings: Mapping[str, Any]) -> None:
    missing = [key for key in REQUIRED_SETTINGS if settings.get(key) in (None, "", {})]
    if missing:
        raise SwitcherManifestError(f"switcher manifests: settings missing: {', '.join(missing)}")
    if int(settings["metrics_port"]) == int(settings["port"]):
        raise SwitcherManifestError(
            f"model_switcher_metrics_port must differ from k3sllm_switcher_port ({settings['port']}): "
            "Prometheus may reach the metrics port only"
        )
    uid = settings["run_as_user"]
    if isinstance(uid, bool) or not isinstance(uid, int) or uid <= 0:
        raise SwitcherManifestError(
            f"model_switcher_run_as_user must be a non-root user id (an integer above 0), got {uid!r}"
        )


def switcher_manifests(
    settings: Mapping[str, Any], catalog: Sequence[Mapping[str, Any]], code: Mapping[str, str], token: str
) -> list[dict[str, Any]]:
    """Every object of the switcher, in apply order, from the normalised catalog (``k3sllm_catalog``)."""
    settings, catalog, code = _plain(settings), _plain(catalog), _plain(code)
    check_settings(settings)
    if "__main__.py" not in code:
        raise SwitcherManifestError(
            "switcher manifests: the switcher package has no __main__.py (model_switcher_source_dir)"
        )
    text = config_text(switcher_config(settings, catalog))
    return [
        code_configmap(settings, code),
        config_configmap(settings, text),
        admin_token_secret(settings, token),
        deployment(settings, config_hash(code, text)),
        service(settings),
        service_monitor(settings),
        ingress_policy(settings),
        egress_to_engines_policy(settings),
        egress_from_clients_policy(settings, "switcher-gateway-egress", settings["client_selector"]),
        egress_from_clients_policy(settings, "switcher-boot-egress", ENGINE_SELECTOR),
    ]
