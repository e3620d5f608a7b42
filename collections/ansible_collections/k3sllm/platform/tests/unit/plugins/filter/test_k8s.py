"""Filters behind roles/k8s_apply: labels and checks on rendered objects."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.k8s import (
    FilterModule,
    k8s_in_missing_namespaces,
    k8s_manifests,
)

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "k3sllm"}}


def test_manifests_stamp_labels_without_mutating_the_input():
    stamped = k8s_manifests([None, CONFIGMAP], "switcher")
    assert len(stamped) == 1
    assert stamped[0]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "k3sllm",
        "k3sllm.io/component": "switcher",
    }
    assert "labels" not in CONFIGMAP["metadata"]


def test_manifests_keep_existing_labels():
    obj = {**CONFIGMAP, "metadata": {"name": "cfg", "labels": {"app": "x"}}}
    assert k8s_manifests([obj], "c")[0]["metadata"]["labels"]["app"] == "x"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"kind": "ConfigMap", "metadata": {"name": "x"}}, "lacks apiVersion"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "lacks metadata.name"),
        ("just a string", "not a mapping"),
    ],
)
def test_manifests_reject_incomplete_objects(obj, message):
    with pytest.raises(AnsibleFilterError, match=message) as error:
        k8s_manifests([obj], "gateway")
    assert "gateway" in str(error.value)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "k8s_manifests",
        "k8s_redact_secrets",
        "k8s_in_missing_namespaces",
    }


def test_objects_in_missing_namespaces_are_set_aside_for_check_mode():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "k3sllm"}}
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "ca"}}
    elsewhere = {**CONFIGMAP, "metadata": {"name": "other", "namespace": "kube-system"}}
    objects = [namespace, CONFIGMAP, issuer, elsewhere]
    assert k8s_in_missing_namespaces(objects, ["default", "kube-system"]) == [CONFIGMAP]
    assert k8s_in_missing_namespaces(objects, ["k3sllm", "kube-system"]) == []
    assert k8s_in_missing_namespaces(objects, []) == [CONFIGMAP, elsewhere]
