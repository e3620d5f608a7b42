"""Which live objects k8s_prune deletes: kind + name, and namespace where both sides name one."""

from __future__ import annotations

import pytest

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_prune import (
    label_selector,
    object_refs,
    stale_objects,
)


def live(name: str, namespace: str | None = None) -> dict:
    """A list item as the API server returns it (items carry no kind)."""
    metadata = {"name": name, "uid": "u", "labels": {"k3sllm.io/component": "vllm"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"metadata": metadata, "spec": {}}


def ref(kind: str, name: str, namespace: str | None = None) -> dict:
    return {"kind": kind, "name": name, **({"namespace": namespace} if namespace else {})}


CASES = [
    ("nothing live", "Deployment", [], [ref("Deployment", "a", "ns")], []),
    ("all still desired", "Deployment", [live("a", "ns")], [ref("Deployment", "a", "ns")], []),
    (
        "a model removed from the catalog",
        "Deployment",
        [live("vllm-alpha", "k3sllm"), live("vllm-beta", "k3sllm")],
        [ref("Deployment", "vllm-alpha", "k3sllm")],
        [ref("Deployment", "vllm-beta", "k3sllm")],
    ),
    (
        "same name, other kind desired",
        "Service",
        [live("vllm-beta", "k3sllm")],
        [ref("Deployment", "vllm-beta", "k3sllm")],
        [ref("Service", "vllm-beta", "k3sllm")],
    ),
    (
        "same name, other namespace desired",
        "ConfigMap",
        [live("settings", "old"), live("settings", "new")],
        [ref("ConfigMap", "settings", "new")],
        [ref("ConfigMap", "settings", "old")],
    ),
    (
        "desired without a namespace keeps the name anywhere",
        "ConfigMap",
        [live("settings", "old"), live("settings", "new")],
        [ref("ConfigMap", "settings")],
        [],
    ),
    ("cluster-scoped kept", "ClusterRole", [live("reader")], [ref("ClusterRole", "reader")], []),
    (
        "cluster-scoped stale has no namespace",
        "ClusterRole",
        [live("reader"), live("writer")],
        [ref("ClusterRole", "reader")],
        [ref("ClusterRole", "writer")],
    ),
    ("nothing desired", "Secret", [live("s", "ns")], [], [ref("Secret", "s", "ns")]),
]


@pytest.mark.parametrize(("case", "kind", "items", "keep", "stale"), CASES, ids=[c[0] for c in CASES])
def test_stale_objects(case, kind, items, keep, stale):
    assert stale_objects(kind, items, keep) == stale, case


def test_object_refs_carry_identity_only():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token", "namespace": "k3sllm", "labels": {"a": "b"}},
        "data": {"token": "c2VjcmV0"},
    }
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}
    assert object_refs([secret, role]) == [
        {"kind": "Secret", "name": "token", "namespace": "k3sllm"},
        {"kind": "ClusterRole", "name": "r"},
    ]
    assert object_refs([]) == []


def test_label_selector_names_manager_and_component():
    assert label_selector("gateway") == "app.kubernetes.io/managed-by=k3sllm,k3sllm.io/component=gateway"
