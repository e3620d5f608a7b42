# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Which live objects of a component are stale: shared by the k8s_prune module and its filter."""

from __future__ import annotations

from typing import Any

# The labels k3sllm.platform.k8s_manifests stamps on every object it renders.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "k3sllm.io/component"


def label_selector(component: str) -> str:
    """The selector that finds the objects k3sllm applied for ``component``, and nothing else."""
    return f"{MANAGED_BY_LABEL}=k3sllm,{COMPONENT_LABEL}={component}"


def object_ref(kind: str, name: str, namespace: str | None = None) -> dict[str, str]:
    """kind/name, and namespace when the object has one."""
    ref = {"kind": kind, "name": name}
    if namespace:
        ref["namespace"] = namespace
    return ref


def object_refs(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kind/namespace/name of each object: what k8s_prune needs, without the objects' data (Secrets)."""
    refs = []
    for obj in objects or []:
        metadata = obj.get("metadata") or {}
        refs.append(object_ref(obj.get("kind", ""), metadata.get("name", ""), metadata.get("namespace")))
    return refs


def is_kept(kind: str, name: str, namespace: str | None, keep: list[dict[str, Any]]) -> bool:
    """True when a desired object has this kind and name, and this namespace where both have one.

    An object rendered without a namespace lands in the kubeconfig's default one, so a missing
    namespace on either side matches any.
    """
    for ref in keep:
        if ref.get("kind") != kind or ref.get("name") != name:
            continue
        wanted = ref.get("namespace")
        if not wanted or not namespace or wanted == namespace:
            return True
    return False


def stale_objects(kind: str, live: list[dict[str, Any]], keep: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The live objects of ``kind`` (API list items) that no entry of ``keep`` asks for, as refs."""
    stale = []
    for item in live:
        metadata = item.get("metadata") or {}
        name, namespace = metadata.get("name", ""), metadata.get("namespace")
        if not is_kept(kind, name, namespace, keep):
            stale.append(object_ref(kind, name, namespace))
    return stale
