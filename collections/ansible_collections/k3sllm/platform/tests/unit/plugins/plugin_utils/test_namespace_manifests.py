"""The platform namespace and its network baseline, built directly."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.app_namespace import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import namespace_manifests as ns

SETTINGS = {
    "namespace": "k3sllm",
    "enforce": "restricted",
    "warn": "restricted",
    "dns_namespace": "kube-system",
    "dns_selector": {"k8s-app": "kube-dns"},
}


def build(**overrides: object) -> dict[tuple[str, str], dict]:
    return {
        (o["kind"], o["metadata"]["name"]): o for o in ns.app_namespace_manifests({**SETTINGS, **overrides})
    }


def test_the_namespace_enforces_the_pod_security_level():
    labels = build(enforce="baseline", warn="restricted")[("Namespace", "k3sllm")]["metadata"]["labels"]
    assert labels == {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


def test_every_pod_is_denied_ingress_and_egress_by_default():
    built = build()
    for direction in ("ingress", "egress"):
        policy = built[("NetworkPolicy", f"default-deny-{direction}")]
        assert policy["metadata"]["namespace"] == "k3sllm"
        assert policy["spec"] == {"podSelector": {}, "policyTypes": [direction.capitalize()]}


def test_dns_is_allowed_to_the_dns_pods_only():
    spec = build()[("NetworkPolicy", "allow-dns-egress")]["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Egress"]
    (rule,) = spec["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert rule["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"enforce": "strict"}, "app_namespace_pod_security_enforce must be one of"),
        ({"warn": None}, "app_namespace_pod_security_warn must be one of"),
        ({"dns_selector": {}}, "app_namespace_dns_pod_selector is empty"),
        ({"namespace": ""}, "setting namespace is empty"),
    ],
)
def test_bad_settings_fail_naming_the_setting(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        FilterModule().filters()["app_namespace_manifests"]({**SETTINGS, **override})
