"""The vLLM engines' Kubernetes objects, built as data from the normalised catalog (roles/vllm renders them
with the ``k3sllm.platform.vllm_engine_objects`` filter).

One builder per object; each takes one record of ``catalog.normalise_catalog`` and the role's settings, so a
test checks one object without a render. Names, labels, ports and engine arguments come from the record:
nothing here spells a cross-role name or applies a catalog default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import ENGINE_SELECTOR

GIB = 1 << 30
POLICY_NAME = "vllm-only-from-switcher"
SWITCHER_SELECTOR = {"app.kubernetes.io/name": "switcher"}

REQUIRED_SETTINGS = (
    "namespace",
    "engine_port",
    "image",
    "node_selector",
    "startup_timeout_seconds",
    "memory_limit_default_gib",
    "memory_headroom_gib",
    "memory_request_gib",
    "cpu_request",
    "shm_size_gib",
    "prometheus_namespace",
)

# The init container: after a reboot every engine starts at once and each checks free VRAM against its
# share, so the switcher grants starts one at a time (GET /boot/<model> answers 200 when it is our turn).
BOOT_GRANT_WAIT = """\
import os, time, urllib.error, urllib.request
url = os.environ["BOOT_GRANT_URL"]
while True:
    try:
        with urllib.request.urlopen(url, timeout=70) as answer:
            if answer.status == 200:
                print("boot granted", flush=True)
                break
    except urllib.error.HTTPError as refused:
        print(f"waiting for boot grant: {refused.code}", flush=True)
    except OSError as error:
        print(f"switcher not reachable yet: {error}", flush=True)
    time.sleep(2)
"""


class EngineManifestError(ValueError):
    """Settings the engines' objects cannot be built from; the message names the setting."""


def check_settings(settings: Mapping[str, Any]) -> None:
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        raise EngineManifestError(f"vllm_engine_objects: settings lack {', '.join(missing)}")


def memory_limit_gib(model: Mapping[str, Any], settings: Mapping[str, Any]) -> float | int:
    """The catalog's memory_limit_gib, else the downloaded weights plus headroom, else the default.

    At sleep level 1 the weights move to pinned host RAM inside this pod's memory cgroup.
    """
    if model.get("memory_limit_gib") is not None:
        return model["memory_limit_gib"]
    weights = int((settings.get("weight_bytes") or {}).get(model["name"], 0) or 0)
    if weights:
        return math.ceil(weights / GIB + float(settings["memory_headroom_gib"]))
    return settings["memory_limit_default_gib"]


def _meta(name: str, settings: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": settings["namespace"]}
    if labels is not None:
        meta["labels"] = dict(labels)
    return meta


def _http_probe(period: int, failures: int, timeout: int | None = None) -> dict:
    # A sleeping engine still answers /health, so sleeping never fails a probe.
    probe: dict[str, Any] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period}
    if timeout is not None:
        probe["timeoutSeconds"] = timeout
    probe["failureThreshold"] = failures
    return probe


def boot_grant_container(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict:
    return {
        "name": "wait-for-boot-grant",
        "image": settings["image"],
        "command": ["python3", "-c"],
        "args": [BOOT_GRANT_WAIT],
        "env": [
            {"name": "BOOT_GRANT_URL", "value": model["engine"]["boot_grant_url"]},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
    }


def engine_container(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict:
    engine = model["engine"]
    return {
        "name": "vllm",
        "image": settings["image"],
        "command": ["vllm", "serve"],
        "args": list(engine["args"]),
        "env": [
            # The sleep, wake and is_sleeping routes exist only in dev mode; the NetworkPolicy is what keeps
            # them away from everything but the switcher.
            {"name": "VLLM_SERVER_DEV_MODE", "value": "1"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
        ],
        "ports": [{"name": "http", "containerPort": engine["port"]}],
        "resources": {
            "requests": {"cpu": settings["cpu_request"], "memory": f"{settings['memory_request_gib']}Gi"},
            "limits": {"memory": f"{memory_limit_gib(model, settings)}Gi", "nvidia.com/gpu": 1},
        },
        "startupProbe": _http_probe(10, math.ceil(int(settings["startup_timeout_seconds"]) / 10)),
        "readinessProbe": _http_probe(10, 3),
        "livenessProbe": _http_probe(20, 6, timeout=10),
        "volumeMounts": [
            {"name": "weights", "mountPath": engine["model_path"], "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }


def deployment(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict:
    engine = model["engine"]
    labels = engine["labels"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(engine["name"], settings, labels),
        "spec": {
            "replicas": 1,
            # Two engines of one model would each claim the model's VRAM share: never run old and new together.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "runtimeClassName": "nvidia",
                    "nodeSelector": dict(settings["node_selector"]),
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 60,
                    "initContainers": [boot_grant_container(model, settings)],
                    "containers": [engine_container(model, settings)],
                    "volumes": [
                        {
                            "name": "weights",
                            "hostPath": {"path": engine["host_weights_path"], "type": "Directory"},
                        },
                        {
                            "name": "shm",
                            "emptyDir": {"medium": "Memory", "sizeLimit": f"{settings['shm_size_gib']}Gi"},
                        },
                    ],
                },
            },
        },
    }


def service(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict:
    engine = model["engine"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(engine["name"], settings, engine["labels"]),
        "spec": {
            "selector": dict(engine["labels"]),
            "ports": [{"name": "http", "port": engine["port"], "targetPort": "http"}],
        },
    }


def service_monitor(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict:
    engine = model["engine"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(engine["name"], settings, engine["labels"]),
        "spec": {
            "selector": {"matchLabels": dict(engine["labels"])},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def network_policy(settings: Mapping[str, Any]) -> dict:
    """vLLM's sleep routes have no authentication: only the switcher may reach the engines, and Prometheus may
    read /metrics. No Ingress ever points at an engine."""
    tcp = [{"port": int(settings["engine_port"]), "protocol": "TCP"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(POLICY_NAME, settings),
        "spec": {
            "podSelector": {"matchLabels": dict(ENGINE_SELECTOR)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": dict(SWITCHER_SELECTOR)}}], "ports": tcp},
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": settings["prometheus_namespace"]
                                }
                            }
                        }
                    ],
                    "ports": [dict(p) for p in tcp],
                },
            ],
        },
    }


def engine_objects(catalog: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[dict]:
    """Every engine object: per model a Deployment, Service and ServiceMonitor, then the NetworkPolicy."""
    check_settings(settings)
    objects: list[dict] = []
    for model in catalog:
        objects += [deployment(model, settings), service(model, settings), service_monitor(model, settings)]
    objects.append(network_policy(settings))
    return objects
