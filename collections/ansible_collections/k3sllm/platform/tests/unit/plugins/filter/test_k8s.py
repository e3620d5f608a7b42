"""Filters behind roles/k8s_apply: labels, file names, secret redaction."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.k8s import (
    REDACTED,
    k8s_file_name,
    k8s_file_names,
    k8s_manifests,
    k8s_redact_secrets,
    k8s_ref,
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


def test_file_names_are_ordered_and_safe():
    cluster_scoped = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "K3sllm_NS"}}
    assert k8s_file_name(cluster_scoped, 0) == "00-namespace-k3sllm-ns.yml"
    assert k8s_file_names([cluster_scoped, CONFIGMAP]) == [
        "00-namespace-k3sllm-ns.yml",
        "01-configmap-k3sllm-cfg.yml",
    ]


def test_secrets_are_redacted_and_other_objects_untouched():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"password": "hunter2"},
        "data": {"token": "aHVudGVyMg=="},
    }
    redacted, configmap = k8s_redact_secrets([secret, CONFIGMAP])
    assert redacted["stringData"] == {"password": REDACTED}
    assert redacted["data"] == {"token": REDACTED}
    assert secret["stringData"]["password"] == "hunter2"
    assert configmap is CONFIGMAP


def test_ref_distinguishes_namespaces():
    other = {**CONFIGMAP, "metadata": {"name": "cfg", "namespace": "other"}}
    assert k8s_ref(CONFIGMAP) == "v1/ConfigMap/k3sllm/cfg"
    assert k8s_ref(CONFIGMAP) != k8s_ref(other)
