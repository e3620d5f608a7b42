"""Pieces every chart-installing role shares (gpu_operator, observability, tls): the HelmChart object K3s's
helm-controller installs, chart values merged with the user's extras, the mirror registry, and the network
policies each chart namespace starts from.

Builders take plain values and return plain dicts, so a role's builder and its tests compose them freely.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


class ChartManifestError(ValueError):
    """Settings a chart's objects cannot be built from; the message names the setting."""


def as_filter(
    builder: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
    """``builder`` as a Jinja filter: bad settings fail the task with the builder's message."""

    @functools.wraps(builder)
    def run(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            return builder(settings)
        except ChartManifestError as exc:
            raise AnsibleFilterError(str(exc)) from exc

    return run


def require(settings: Mapping[str, Any], keys: Iterable[str], builder: str) -> None:
    """Fail with the missing keys named: a role that forgot one is a bug in the role, not the inventory."""
    if not isinstance(settings, Mapping):
        raise ChartManifestError(f"{builder}: settings must be a mapping, not {type(settings).__name__}")
    missing = [key for key in keys if key not in settings]
    if missing:
        raise ChartManifestError(f"{builder}: settings lack {', '.join(missing)}")


def flag(settings: Mapping[str, Any], key: str, variable: str) -> bool:
    """A true/false setting; anything else names the variable instead of being read as truthy."""
    value = settings[key]
    if not isinstance(value, bool):
        raise ChartManifestError(f"{variable} is {value!r}: set true or false")
    return value


def mapping(settings: Mapping[str, Any], key: str, variable: str) -> Mapping[str, Any]:
    value = settings[key]
    if not isinstance(value, Mapping):
        raise ChartManifestError(f"{variable} must be a mapping of chart values, not {type(value).__name__}")
    return value


def registry(text: str) -> str:
    """The mirror's address without trailing slashes ('' when pulling from the public registries)."""
    return str(text or "").rstrip("/")


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``: mappings merge key by key, anything else (lists included) replaces.

    Keys keep ``base``'s order and new keys follow in ``extra``'s, as Ansible's ``combine(recursive=true)``
    does; neither argument is changed.
    """
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two keys twice, never as an anchor and alias a reader may not follow; the
    subclasses of str, dict and list that Ansible hands a filter are written as their base type."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_PlainDumper.add_multi_representer(str, yaml.SafeDumper.represent_str)
_PlainDumper.add_multi_representer(dict, yaml.SafeDumper.represent_dict)
_PlainDumper.add_multi_representer(list, yaml.SafeDumper.represent_list)


def to_yaml(data: Any) -> str:
    """Block YAML, keys in insertion order: the form of valuesContent and of configuration files in data."""
    return yaml.dump(
        data, Dumper=_PlainDumper, indent=2, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def namespace(name: str, enforce: str) -> dict[str, Any]:
    """A chart's namespace with the Pod Security level its operands need."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": enforce}},
    }


def helm_chart(
    name: str,
    target_namespace: str,
    values: Mapping[str, Any],
    *,
    repo: str,
    version: str,
    content: str = "",
) -> dict[str, Any]:
    """A HelmChart in kube-system: the embedded archive (base64, airgap) when given, else repo and version."""
    source: dict[str, Any] = (
        {"chartContent": content} if content else {"chart": name, "repo": repo, "version": str(version)}
    )
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            **source,
            "targetNamespace": target_namespace,
            "createNamespace": False,
            "valuesContent": to_yaml(values),
        },
    }


def network_policy(
    name: str,
    namespace_name: str,
    pod_selector: Mapping[str, Any],
    ingress: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """An ingress policy; ``ingress=None`` denies every ingress to the selected pods."""
    spec: dict[str, Any] = {"podSelector": dict(pod_selector), "policyTypes": ["Ingress"]}
    if ingress is not None:
        spec["ingress"] = [dict(rule) for rule in ingress]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace_name},
        "spec": spec,
    }


def default_deny_ingress(namespace_name: str) -> dict[str, Any]:
    return network_policy("default-deny-ingress", namespace_name, {}, None)


def tcp_ports(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def pods_in(namespace_name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A peer: the pods with ``labels`` in namespace ``namespace_name``."""
    return {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace_name}},
        "podSelector": {"matchLabels": dict(labels)},
    }


def from_api_server(
    name: str, namespace_name: str, pod_labels: Mapping[str, str], cidrs: Sequence[str], port: int
) -> dict[str, Any]:
    """Only the API server (whose requests come from the node and cluster ranges) calls an admission webhook."""
    if isinstance(cidrs, str) or not cidrs:
        raise ChartManifestError(
            f"k3sllm_api_server_cidrs is {cidrs!r}: list the ranges the API server calls webhooks from"
        )
    peers = [{"ipBlock": {"cidr": str(cidr)}} for cidr in cidrs]
    return network_policy(
        name,
        namespace_name,
        {"matchLabels": dict(pod_labels)},
        [{"from": peers, "ports": tcp_ports(port)}],
    )
