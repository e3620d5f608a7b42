"""Filters for the Kubernetes objects our roles render (see roles/k8s_apply)."""

from __future__ import annotations

import copy
import re

from ansible.errors import AnsibleFilterError

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "k3sllm.io/component"
REDACTED = "<redacted: set at apply time from vault or a generated secret>"


def k8s_manifests(objects: list, component: str) -> list[dict]:
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
        stamped = copy.deepcopy(obj)
        labels = stamped["metadata"].setdefault("labels", {}) or {}
        labels.update({MANAGED_BY: "k3sllm", COMPONENT: component})
        stamped["metadata"]["labels"] = labels
        result.append(stamped)
    return result


def k8s_file_name(obj: dict, index: int) -> str:
    """A stable, readable file name for one object in a render folder."""
    meta = obj.get("metadata", {})
    parts = [f"{index:02d}", obj.get("kind", "object").lower()]
    if meta.get("namespace"):
        parts.append(meta["namespace"])
    parts.append(meta.get("name", "unnamed"))
    return re.sub(r"[^a-z0-9.-]+", "-", "-".join(parts).lower()) + ".yml"


def k8s_file_names(objects: list[dict]) -> list[str]:
    """File names of a whole render folder, in order."""
    return [k8s_file_name(obj, index) for index, obj in enumerate(objects)]


def k8s_redact_secrets(objects: list[dict]) -> list[dict]:
    """Replace Secret values so a GitOps export never holds a password in plain text."""
    result = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            obj = copy.deepcopy(obj)
            for field in ("data", "stringData"):
                if obj.get(field):
                    obj[field] = dict.fromkeys(obj[field], REDACTED)
        result.append(obj)
    return result


def k8s_ref(obj: dict) -> str:
    """apiVersion/kind/namespace/name, to compare live objects with the desired set."""
    meta = obj.get("metadata", {})
    return "/".join(
        [obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", "")]
    )


class FilterModule:
    def filters(self) -> dict:
        return {
            "k8s_manifests": k8s_manifests,
            "k8s_file_name": k8s_file_name,
            "k8s_file_names": k8s_file_names,
            "k8s_redact_secrets": k8s_redact_secrets,
            "k8s_ref": k8s_ref,
        }
