"""The vLLM engines' Kubernetes objects, built as data from the normalised catalog (roles/vllm renders them
with the ``k3sllm.platform.vllm_engine_objects`` filter).

One builder per object; each takes one record of ``catalog.normalise_catalog`` and the role's settings, so a
test checks one object without a render. Names, labels, ports and engine arguments come from the record:
nothing here spells a cross-role name or applies a catalog default.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import (
    ENGINE_SELECTOR,
    SWITCHER_SELECTOR,
)

GIB = 1 << 30
POLICY_NAME = "vllm-only-from-switcher"

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
    "home_size_gib",
    "tmp_size_gib",
    "run_as_user",
    "prometheus_namespace",
    "prometheus_selector",
)
# The engine's writable places on a read-only root filesystem: HOME holds every library cache (Hugging Face,
# vLLM, Triton, torch compile, FlashInfer), resolved through HOME by their defaults.
HOME = "/home/vllm"
USER = "vllm"

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
    uid = settings["run_as_user"]
    if isinstance(uid, bool) or not isinstance(uid, int) or uid < 1:
        raise EngineManifestError(
            f"k3sllm_vllm_run_as_user is {uid!r}: the engines run as a non-root user, set a user id of 1 or more"
        )
    if not settings["prometheus_selector"]:
        raise EngineManifestError(
            "vllm_prometheus_pod_selector is empty: it would admit every pod of the Prometheus namespace to the "
            "engines; set the labels of the Prometheus pods (app.kubernetes.io/name: prometheus)"
        )


def volume_id(model: Mapping[str, Any]) -> str:
    """Short digest of the weights' host path: a local volume's path cannot change, so a new revision (or
    weights folder) gets a new PersistentVolume and claim, and the old ones are pruned."""
    return hashlib.sha256(model["engine"]["host_weights_path"].encode()).hexdigest()[:10]


def claim_name(model: Mapping[str, Any]) -> str:
    return f"{model['engine']['name']}-weights-{volume_id(model)}"


def volume_name(model: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    # Cluster-scoped: the namespace keeps two installations on one cluster apart.
    return f"k3sllm-{settings['namespace']}-{claim_name(model)}"


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security(settings: Mapping[str, Any]) -> dict[str, Any]:
    uid = int(settings["run_as_user"])
    # No fsGroup: it would make the kubelet change the group of every weight file on the host.
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _gib_number(value: Any) -> float | int:
    """A size as written (12 stays 12Gi, 12.5 stays 12.5Gi), also when -e hands it over as the string "12"."""
    number = float(value)
    return int(number) if number.is_integer() else number


def memory_limit_gib(model: Mapping[str, Any], settings: Mapping[str, Any]) -> float | int:
    """The catalog's memory_limit_gib, else the downloaded weights plus headroom, else the default.

    At sleep level 1 the weights move to pinned host RAM inside this pod's memory cgroup.
    """
    if model.get("memory_limit_gib") is not None:
        return _gib_number(model["memory_limit_gib"])
    weights = int((settings.get("weight_bytes") or {}).get(model["name"], 0) or 0)
    if weights:
        return math.ceil(weights / GIB + float(settings["memory_headroom_gib"]))
    return _gib_number(settings["memory_limit_default_gib"])


def _meta(name: str, settings: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": settings["namespace"]}
    if labels is not None:
        meta["labels"] = dict(labels)
    return meta


def _http_probe(period: int, failures: int, timeout: int | None = None) -> dict[str, Any]:
    # A sleeping engine still answers /health, so sleeping never fails a probe.
    probe: dict[str, Any] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period}
    if timeout is not None:
        probe["timeoutSeconds"] = timeout
    probe["failureThreshold"] = failures
    return probe


def boot_grant_container(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
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
        "securityContext": container_security(),
    }


def engine_container(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
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
            # The user id has no passwd entry in the image: libraries that ask for the user's name or home
            # (torch's compile cache, Triton) read these.
            {"name": "HOME", "value": HOME},
            {"name": "USER", "value": USER},
            {"name": "LOGNAME", "value": USER},
            # Nothing leaves the cluster, and the usage-stats file would be written under HOME for nothing.
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
        ],
        "ports": [{"name": "http", "containerPort": engine["port"]}],
        "resources": {
            "requests": {"cpu": settings["cpu_request"], "memory": f"{settings['memory_request_gib']}Gi"},
            "limits": {"memory": f"{memory_limit_gib(model, settings)}Gi", "nvidia.com/gpu": 1},
        },
        "startupProbe": _http_probe(10, math.ceil(int(settings["startup_timeout_seconds"]) / 10)),
        "readinessProbe": _http_probe(10, 3),
        "livenessProbe": _http_probe(20, 6, timeout=10),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "weights", "mountPath": engine["model_path"], "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "home", "mountPath": HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def deployment(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
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
                    # The engines never call the Kubernetes API.
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(settings),
                    "terminationGracePeriodSeconds": 60,
                    "initContainers": [boot_grant_container(model, settings)],
                    "containers": [engine_container(model, settings)],
                    "volumes": [
                        {
                            "name": "weights",
                            "persistentVolumeClaim": {"claimName": claim_name(model), "readOnly": True},
                        },
                        {
                            "name": "shm",
                            "emptyDir": {"medium": "Memory", "sizeLimit": f"{settings['shm_size_gib']}Gi"},
                        },
                        {"name": "home", "emptyDir": {"sizeLimit": f"{settings['home_size_gib']}Gi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": f"{settings['tmp_size_gib']}Gi"}},
                    ],
                },
            },
        },
    }


def weights_volume(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The model's weights folder on the GPU nodes as a local PersistentVolume, bound to the model's claim only.

    A pod may mount it where Pod Security "restricted" forbids a hostPath volume. model_weights downloads
    every model to the same path on every GPU node, so the volume may be used on any node the engines may
    run on (the engines' node selector).
    """
    engine = model["engine"]
    weights = int((settings.get("weight_bytes") or {}).get(model["name"], 0) or 0)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(model, settings), "labels": dict(engine["labels"])},
        "spec": {
            # Informational: a local volume enforces no size.
            "capacity": {"storage": f"{max(1, math.ceil(weights / GIB))}Gi"},
            "accessModes": ["ReadOnlyMany"],
            "volumeMode": "Filesystem",
            # Deleting the claim (a model removed, a new revision) never deletes the weights.
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": settings["namespace"], "name": claim_name(model)},
            "local": {"path": engine["host_weights_path"]},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": key, "operator": "In", "values": [str(value)]}
                                for key, value in sorted(settings["node_selector"].items())
                            ]
                        }
                    ]
                }
            },
        },
    }


def weights_claim(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(claim_name(model), settings, model["engine"]["labels"]),
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            # Bound by name to the model's volume, never to the cluster's default storage class.
            "storageClassName": "",
            "volumeName": volume_name(model, settings),
            "resources": {"requests": {"storage": "1Mi"}},
        },
    }


def service(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
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


def service_monitor(model: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
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


def network_policy(settings: Mapping[str, Any]) -> dict[str, Any]:
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
                # Prometheus's own pods, not its whole namespace. vLLM serves /metrics on its one port, so
                # these pods could also reach the sleep routes: a NetworkPolicy narrows no further than a port.
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": settings["prometheus_namespace"]
                                }
                            },
                            "podSelector": {"matchLabels": dict(settings["prometheus_selector"])},
                        }
                    ],
                    "ports": [dict(p) for p in tcp],
                },
            ],
        },
    }


def engine_objects(catalog: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every engine object: per model its weights volume and claim, Deployment, Service and ServiceMonitor,
    then the NetworkPolicy."""
    check_settings(settings)
    objects: list[dict[str, Any]] = []
    for model in catalog:
        objects += [
            weights_volume(model, settings),
            weights_claim(model, settings),
            deployment(model, settings),
            service(model, settings),
            service_monitor(model, settings),
        ]
    objects.append(network_policy(settings))
    return objects
