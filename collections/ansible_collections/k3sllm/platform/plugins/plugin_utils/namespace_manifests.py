"""The platform namespace and its network baseline, built as data (roles/app_namespace renders them
with the ``k3sllm.platform.app_namespace_manifests`` filter).

The baseline denies all ingress and all egress to every pod of the namespace and lets every pod
resolve names; each component's role adds the narrow allowances its pods need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class NamespaceManifestError(ValueError):
    """Settings the namespace cannot be built from; the message names the setting."""


def namespace(name: str, enforce: str, warn: str) -> dict[str, Any]:
    """The namespace, with the Pod Security level the API server enforces on every pod created in it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": enforce,
                "pod-security.kubernetes.io/warn": warn,
                "pod-security.kubernetes.io/audit": warn,
            },
        },
    }


def default_deny(namespace_name: str, direction: str) -> dict[str, Any]:
    """Selects every pod for ``direction`` (Ingress or Egress) and allows nothing."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"default-deny-{direction.lower()}", "namespace": namespace_name},
        "spec": {"podSelector": {}, "policyTypes": [direction]},
    }


def dns_egress(namespace_name: str, dns_namespace: str, dns_selector: Mapping[str, str]) -> dict[str, Any]:
    """Every pod may ask the cluster DNS (and nothing else through this policy)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-dns-egress", "namespace": namespace_name},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: dns_namespace}},
                            "podSelector": {"matchLabels": dict(dns_selector)},
                        }
                    ],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                }
            ],
        },
    }


def app_namespace_manifests(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The namespace, default-deny ingress and egress, and the DNS allowance, in apply order."""
    for key in ("enforce", "warn"):
        if settings.get(key) not in POD_SECURITY_LEVELS:
            raise NamespaceManifestError(
                f"app_namespace_pod_security_{key} must be one of {', '.join(POD_SECURITY_LEVELS)}, "
                f"got {settings.get(key)!r}"
            )
    for key in ("namespace", "dns_namespace"):
        if not settings.get(key):
            raise NamespaceManifestError(f"app namespace manifests: setting {key} is empty")
    if not settings.get("dns_selector"):
        raise NamespaceManifestError(
            "app_namespace_dns_pod_selector is empty: it would let every pod of the DNS namespace be reached"
        )
    name = str(settings["namespace"])
    return [
        namespace(name, str(settings["enforce"]), str(settings["warn"])),
        default_deny(name, "Ingress"),
        default_deny(name, "Egress"),
        dns_egress(
            name, str(settings["dns_namespace"]), {k: str(v) for k, v in settings["dns_selector"].items()}
        ),
    ]
