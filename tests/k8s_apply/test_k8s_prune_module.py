"""The module k3sllm.platform.k8s_prune against the Kubernetes API stand-in
(tests/standins/kube_apiserver.py): what it deletes, what it leaves, check mode, kinds without a CRD,
and its errors. Here and not among the collection's unit tests, which must run without this
repository's stand-ins (ansible-test units); the role's use of it, end to end, is in test_apply.py."""

from __future__ import annotations

import json

import pytest

from ansible_collections.k3sllm.platform.plugins.modules import k8s_prune
from ansible_collections.k3sllm.platform.tests.unit import conftest as collection_unit_tests
from standins.kube_apiserver import KubeApiServer, builtin

run_module = collection_unit_tests.run_module  # the collection's fixture: a module's main() in-process

LABELS = {"app.kubernetes.io/managed-by": "k3sllm", "k3sllm.io/component": "vllm"}
DEPLOYMENTS = {"api_version": "apps/v1", "kind": "Deployment", "namespace": "k3sllm"}
SERVICES = {"api_version": "v1", "kind": "Service", "namespace": "k3sllm"}
SERVICE_MONITORS = {
    "api_version": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "namespace": "k3sllm",
}


def add(api: KubeApiServer, kind: str, name: str, namespace: str | None = "k3sllm", labels=None) -> None:
    metadata = {"name": name, "labels": LABELS if labels is None else labels}
    if namespace:
        metadata["namespace"] = namespace
    api.store.put(builtin(kind), {"metadata": metadata, "spec": {}})


@pytest.fixture
def api():
    with KubeApiServer() as server:
        add(server, "Namespace", "k3sllm", namespace=None, labels={})
        add(server, "Deployment", "vllm-alpha")
        add(server, "Deployment", "vllm-beta")
        add(server, "Service", "vllm-alpha")
        add(server, "Service", "vllm-beta")
        # Not this component's, or not ours at all: never deleted.
        add(server, "Deployment", "switcher", labels={**LABELS, "k3sllm.io/component": "switcher"})
        add(server, "Deployment", "vllm-gamma", labels={})
        yield server


@pytest.fixture
def prune(run_module, api, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())

    def _prune(kinds: list[dict], keep: list[dict], **extra) -> dict:
        args = {"kubeconfig": str(kubeconfig), "component": "vllm", "kinds": kinds, "keep": keep, **extra}
        return run_module(k8s_prune.main, args)

    return _prune


def keep(*names: str, kinds=("Deployment", "Service"), namespace: str | None = "k3sllm") -> list[dict]:
    refs = [{"kind": kind, "name": name} for kind in kinds for name in names]
    return [{**ref, "namespace": namespace} if namespace else ref for ref in refs]


def test_deletes_what_is_no_longer_desired_then_nothing(api, prune):
    result = prune([DEPLOYMENTS, SERVICES], keep("vllm-alpha"))
    assert result["changed"] is True
    assert result["deleted"] == [
        {"kind": "Deployment", "namespace": "k3sllm", "name": "vllm-beta"},
        {"kind": "Service", "namespace": "k3sllm", "name": "vllm-beta"},
    ]
    assert api.store.names("Deployment") == ["switcher", "vllm-alpha", "vllm-gamma"]
    assert api.store.names("Service") == ["vllm-alpha"]
    assert api.store.writes == ["delete Deployment/vllm-beta", "delete Service/vllm-beta"]

    again = prune([DEPLOYMENTS, SERVICES], keep("vllm-alpha"))
    assert again["changed"] is False
    assert again["deleted"] == []
    assert len(api.store.writes) == 2


def test_only_listed_kinds_are_pruned(api, prune):
    result = prune([SERVICES], keep("vllm-alpha"))
    assert result["deleted"] == [{"kind": "Service", "namespace": "k3sllm", "name": "vllm-beta"}]
    assert "vllm-beta" in api.store.names("Deployment")


def test_check_mode_reports_and_deletes_nothing(api, prune):
    result = prune([DEPLOYMENTS, SERVICES], keep(), _ansible_check_mode=True)
    assert result["changed"] is True
    assert [ref["name"] for ref in result["deleted"]] == ["vllm-alpha", "vllm-beta"] * 2
    assert api.store.writes == []
    assert api.store.names("Service") == ["vllm-alpha", "vllm-beta"]


def test_namespace_is_part_of_the_identity(api, prune):
    # The same name in two namespaces: only the desired namespace's object stays (a name-only match
    # would keep both).
    add(api, "Namespace", "old", namespace=None, labels={})
    add(api, "Deployment", "vllm-alpha", namespace="old")
    all_namespaces = {"api_version": "apps/v1", "kind": "Deployment"}
    result = prune([all_namespaces], keep("vllm-alpha", "vllm-beta", kinds=("Deployment",)))
    assert result["deleted"] == [{"kind": "Deployment", "namespace": "old", "name": "vllm-alpha"}]
    assert api.store.get("Deployment", "vllm-alpha", "k3sllm") is not None


def test_a_kind_limited_to_a_namespace_leaves_the_others(api, prune):
    add(api, "Namespace", "old", namespace=None, labels={})
    add(api, "Deployment", "vllm-beta", namespace="old")
    result = prune([DEPLOYMENTS], keep("vllm-alpha", kinds=("Deployment",)))
    assert result["deleted"] == [{"kind": "Deployment", "namespace": "k3sllm", "name": "vllm-beta"}]
    assert api.store.get("Deployment", "vllm-beta", "old") is not None


def test_cluster_scoped_objects(api, prune):
    add(api, "ClusterRole", "vllm-reader", namespace=None)
    add(api, "ClusterRole", "vllm-old", namespace=None)
    cluster_roles = {"api_version": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    result = prune([cluster_roles], [{"kind": "ClusterRole", "name": "vllm-reader"}])
    assert result["deleted"] == [{"kind": "ClusterRole", "name": "vllm-old"}]
    assert api.store.names("ClusterRole") == ["vllm-reader"]


def test_a_kind_without_its_crd_has_nothing_to_prune(api, prune):
    result = prune([SERVICE_MONITORS, SERVICES], keep("vllm-alpha"))
    assert result["unserved_kinds"] == ["monitoring.coreos.com/v1/ServiceMonitor"]
    assert result["deleted"] == [{"kind": "Service", "namespace": "k3sllm", "name": "vllm-beta"}]

    # Once the chart brought the CRD, the same call prunes its objects too.
    api.install_chart("kube-prometheus-stack", "monitoring")
    monitor = next(kind for kind in api.store.served() if kind.kind == "ServiceMonitor")
    api.store.put(monitor, {"metadata": {"name": "vllm-beta", "namespace": "k3sllm", "labels": LABELS}})
    result = prune([SERVICE_MONITORS], keep("vllm-alpha", kinds=("ServiceMonitor",)))
    assert result["unserved_kinds"] == []
    assert result["deleted"] == [{"kind": "ServiceMonitor", "namespace": "k3sllm", "name": "vllm-beta"}]
    assert api.store.names("ServiceMonitor") == []


def test_keep_entries_need_kind_and_name(prune):
    result = prune([DEPLOYMENTS], [{"name": "vllm-alpha"}])
    assert result["failed"] is True
    assert "kind" in result["msg"] and "keep" in result["msg"]


def test_an_invalid_kubeconfig_names_the_fix(run_module, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": []}))
    args = {"kubeconfig": str(kubeconfig), "component": "vllm", "kinds": [DEPLOYMENTS], "keep": []}
    result = run_module(k8s_prune.main, args)
    assert result["failed"] is True
    assert str(kubeconfig) in result["msg"] and "k8s_apply_kubeconfig" in result["msg"]


def test_an_unreachable_server_names_the_fix(run_module, tmp_path):
    with KubeApiServer() as stopped:
        config = stopped.kubeconfig()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(config)
    args = {"kubeconfig": str(kubeconfig), "component": "vllm", "kinds": [DEPLOYMENTS], "keep": []}
    result = run_module(k8s_prune.main, args)
    assert result["failed"] is True
    assert "Cannot reach the Kubernetes API server" in result["msg"]
