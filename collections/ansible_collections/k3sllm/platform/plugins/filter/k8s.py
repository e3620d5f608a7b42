"""Filters for the Kubernetes objects our roles render (see roles/k8s_apply)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_objects import redact_secrets

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "k3sllm.io/component"


def k8s_manifests(objects: list[Any], component: str) -> list[dict[str, Any]]:
    """Validate rendered objects and stamp them with the labels that prune and review rely on.

    Drops empty YAML documents (a template's ``---`` between optional blocks), and fails with the
    component's name when an object lacks apiVersion, kind or metadata.name.
    """
    result = []
    for index, obj in enumerate(objects or []):
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise AnsibleFilterError(f"{component}: manifest document {index} is not a mapping: {obj!r:.80}")
        missing = [key for key in ("apiVersion", "kind") if not obj.get(key)]
        if not (obj.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise AnsibleFilterError(
                f"{component}: manifest document {index} ({obj.get('kind', '?')}) lacks {', '.join(missing)}"
            )
        # Copy only the levels that change: a deep copy of Ansible's lazily templated containers took
        # most of a render's time (seconds per component).
        metadata = dict(obj["metadata"])
        metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY: "k3sllm", COMPONENT: component}
        result.append({**obj, "metadata": metadata})
    return result


def k8s_in_missing_namespaces(
    objects: list[dict[str, Any]], existing_namespaces: list[str]
) -> list[dict[str, Any]]:
    """The objects whose namespace the cluster does not have yet.

    The API server refuses a dry-run create in a namespace that does not exist (admission runs on dry
    runs too), even when the same batch creates that namespace first. Check mode leaves these objects
    out of the server's dry run and reports them as to be created. Cluster-scoped objects (no
    metadata.namespace), Namespaces included, are never in the result.
    """
    existing = set(existing_namespaces or [])
    return [
        obj
        for obj in objects or []
        if (obj.get("metadata") or {}).get("namespace") not in existing | {None, ""}
    ]


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        # k8s_redact_secrets: so render arguments never carry a secret (and need no no_log).
        return {
            "k8s_manifests": k8s_manifests,
            "k8s_redact_secrets": redact_secrets,
            "k8s_in_missing_namespaces": k8s_in_missing_namespaces,
        }
