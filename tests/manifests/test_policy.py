"""Security policy over every rendered inventory: locked-down containers, the namespace's Pod Security
level, NetworkPolicies that name their sources, no ClusterRole reading Secrets, and the connection
matrix of the platform namespace (who may open a connection to whom).

Every rule is also shown failing on a deliberately broken manifest, built from the roles' own
builders (no render needed), so a rule that stopped checking would fail here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import yaml
from manifests.policy_rules import (
    Endpoint,
    cluster_role_problems,
    connection_allowed,
    container_problems,
    default_deny_problems,
    network_policy_problems,
    pod_security_problems,
    workload_endpoints,
)

from ansible_collections.k3sllm.platform.plugins.plugin_utils import namespace_manifests as ns
from ansible_collections.k3sllm.platform.plugins.plugin_utils import switcher_manifests as sw
from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import normalise_catalog

# Pods outside the platform namespace, as K3s and kube-prometheus-stack label them.
TRAEFIK = Endpoint("traefik", "kube-system", {"app.kubernetes.io/name": "traefik"})
PROMETHEUS = Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA = Endpoint("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"})
COREDNS = Endpoint("coredns", "kube-system", {"k8s-app": "kube-dns"})
# Addresses outside the pod network: the API server (Service address and a node's 6443), the internet.
API_SERVICE = Endpoint("kube-apiserver-service", ip="10.43.0.1")
API_NODE = Endpoint("kube-apiserver-node", ip="192.168.1.10")
INTERNET = Endpoint("internet", ip="203.0.113.10")


# --- On every rendered inventory ----------------------------------------------------------------


def app_namespace(rendered) -> str:
    (switcher,) = [o for o in rendered.component("switcher") if o["kind"] == "Deployment"]
    return switcher["metadata"]["namespace"]


@pytest.mark.slow
def test_every_container_runs_locked_down(rendered):
    assert not container_problems(rendered.objects), "\n".join(container_problems(rendered.objects))
    # The rule saw the workloads it is meant for (engines with their init containers included).
    kinds = {o["kind"] for o in rendered.objects}
    assert "Deployment" in kinds


@pytest.mark.slow
def test_every_pod_meets_its_namespaces_pod_security_level(rendered):
    problems = pod_security_problems(rendered.objects)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_platform_namespace_enforces_the_restricted_level(rendered):
    (namespace,) = [
        o for o in rendered.of_kind("Namespace") if o["metadata"]["name"] == app_namespace(rendered)
    ]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


@pytest.mark.slow
def test_no_policy_opens_an_engine_or_the_switcher_to_a_whole_namespace(rendered):
    problems = network_policy_problems(rendered.objects)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_platform_namespace_denies_by_default(rendered):
    problems = default_deny_problems(rendered.objects, app_namespace(rendered))
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_no_cluster_role_of_ours_reads_secrets(rendered):
    problems = cluster_role_problems(rendered.objects)
    assert not problems, "\n".join(problems)


def service_port(objects: list[dict], name: str, port_name: str = "http") -> int:
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == port_name]
    return int(port["port"])


@pytest.mark.slow
def test_the_connection_matrix_is_exactly_the_request_path(rendered):
    """Every connection the namespace's policies allow, among our pods and the pods and addresses
    around them, is one the request path needs; everything else is refused."""
    namespace = app_namespace(rendered)
    ours = [e for e in workload_endpoints(rendered.objects) if e.namespace == namespace]
    by_name = {e.name: e for e in ours}
    engines = [e for e in ours if e.labels.get("app.kubernetes.io/name") == "vllm"]
    assert len(engines) == len(rendered.catalog)
    intruder = Endpoint("intruder", namespace, {"app.kubernetes.io/name": "intruder"})
    switcher, litellm, postgres = by_name["switcher"], by_name["litellm"], by_name["litellm-postgres"]
    switcher_port = service_port(rendered.objects, "switcher")
    switcher_metrics_port = service_port(rendered.objects, "switcher", "metrics")
    engine_port = service_port(rendered.objects, engines[0].name)
    targets = [(e, port) for e in ours for port in sorted(set(e.ports.values()))]
    targets += [(COREDNS, 53), (API_SERVICE, 443), (API_NODE, 6443), (INTERNET, 443)]
    sources = [*ours, intruder, TRAEFIK, PROMETHEUS, GRAFANA]

    def key(source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> tuple:
        return (source.name, destination.name, port, protocol)

    allowed = {
        key(source, destination, port, protocol)
        for source in sources
        for destination, port in targets
        for protocol in ("TCP", "UDP")
        # Connections into or out of the platform namespace; the rest is other namespaces' business.
        if source is not destination
        and namespace in (source.namespace, destination.namespace)
        and connection_allowed(rendered.objects, source, destination, port, protocol)
    }
    expected = {
        key(TRAEFIK, litellm, 4000),
        key(PROMETHEUS, litellm, 4000),
        key(PROMETHEUS, switcher, switcher_metrics_port),
        key(litellm, switcher, switcher_port),
        key(litellm, postgres, 5432),
        *(key(switcher, engine, engine_port) for engine in engines),
        *(key(engine, switcher, switcher_port) for engine in engines),
        *(key(PROMETHEUS, engine, engine_port) for engine in engines),
        # Name lookups: every pod of the namespace, the intruder as well (any new pod gets only this).
        *(key(pod, COREDNS, 53, protocol) for pod in [*ours, intruder] for protocol in ("TCP", "UDP")),
    }
    assert sorted(allowed - expected) == [], f"allowed but not needed: {sorted(allowed - expected)}"
    assert sorted(expected - allowed) == [], f"needed but refused: {sorted(expected - allowed)}"


# --- Each rule fails on a broken manifest (built without a render) -------------------------------

SHA = "a09a35458c702b33eeacc393d103063234e8bc28"
SETTINGS = {
    "namespace": "k3sllm",
    "image": "docker.io/vllm/vllm-openai:v0.32.0",
    "port": 8080,
    "metrics_port": 9090,
    "service_name": "switcher",
    "engine_port": 8000,
    "run_as_user": 65534,
    "memory_limit": "512Mi",
    "cpu_request": "250m",
    "client_selector": {"app.kubernetes.io/name": "litellm"},
    "prometheus_namespace": "monitoring",
    "prometheus_selector": {"app.kubernetes.io/name": "prometheus"},
    "sleep_level": 1,
    "sleeping_residual_vram_gib": 1.0,
}


def base_objects(enforce: str = "restricted") -> list[dict]:
    """The namespace baseline and the switcher's objects as the roles build them, plus an engine pod."""
    catalog = normalise_catalog(
        [{"name": "m", "repo": "o/m", "revision": SHA, "gpu_memory_utilization": 0.5, "max_model_len": 512}],
        namespace="k3sllm",
        engine_port=8000,
        switcher_service="switcher",
        switcher_port=8080,
        weights_dir="/w",
    )
    namespace = ns.app_namespace_manifests(
        {
            "namespace": "k3sllm",
            "enforce": enforce,
            "warn": "restricted",
            "dns_namespace": "kube-system",
            "dns_selector": {"k8s-app": "kube-dns"},
        }
    )
    switcher = sw.switcher_manifests(SETTINGS, catalog, {"__main__.py": ""}, "token")
    engine = copy.deepcopy(next(o for o in switcher if o["kind"] == "Deployment"))
    engine["metadata"]["name"] = "vllm-m"
    engine["spec"]["template"]["metadata"]["labels"] = {
        "app.kubernetes.io/name": "vllm",
        "k3sllm.io/model": "m",
    }
    engine["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8000}]
    return [*namespace, *switcher, engine]


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def switcher_pod(objects: list[dict]) -> dict:
    return find(objects, "Deployment", "switcher")["spec"]["template"]["spec"]


def switcher_container(objects: list[dict]) -> dict:
    return switcher_pod(objects)["containers"][0]


def as_kind(kind: str) -> Callable[[list[dict]], None]:
    """Re-wrap the switcher's pod in another workload kind, with one container left unhardened."""

    def mutate(objects: list[dict]) -> None:
        deployment = find(objects, "Deployment", "switcher")
        switcher_container(objects).pop("securityContext")
        template = deployment["spec"]["template"]
        deployment["kind"] = kind
        if kind == "CronJob":
            deployment["spec"] = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
        elif kind == "Job":
            deployment["apiVersion"] = "batch/v1"
            deployment["spec"] = {"template": template}

    return mutate


def pod_context(objects: list[dict]) -> dict:
    return switcher_pod(objects)["securityContext"]


CONTAINER_BREAKS = {
    "runAsNonRoot missing": (lambda o: pod_context(o).pop("runAsNonRoot"), "runAsNonRoot is not true"),
    "runAsNonRoot false in the container": (
        lambda o: switcher_container(o)["securityContext"].update(runAsNonRoot=False),
        "runAsNonRoot is not true",
    ),
    "runs as root": (
        lambda o: switcher_container(o)["securityContext"].update(runAsUser=0),
        "runAsUser is not a fixed non-root user id (0)",
    ),
    "no fixed uid": (
        lambda o: pod_context(o).pop("runAsUser"),
        "runAsUser is not a fixed non-root user id (None)",
    ),
    "writable root": (
        lambda o: switcher_container(o)["securityContext"].update(readOnlyRootFilesystem=False),
        "readOnlyRootFilesystem is not true",
    ),
    "escalation allowed": (
        lambda o: switcher_container(o)["securityContext"].pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation is not false",
    ),
    "capabilities kept": (
        lambda o: switcher_container(o)["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        "capabilities do not drop ALL",
    ),
    "capability added": (
        lambda o: switcher_container(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "capabilities add ['NET_ADMIN']",
    ),
    "privileged": (
        lambda o: switcher_container(o)["securityContext"].update(privileged=True),
        ": privileged",
    ),
    "no seccomp": (lambda o: pod_context(o).pop("seccompProfile"), "seccompProfile is None"),
    "seccomp unconfined in the container": (
        lambda o: switcher_container(o)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile is 'Unconfined'",
    ),
    "init container unhardened": (
        lambda o: switcher_pod(o).update(initContainers=[{"name": "wait", "image": "busybox:1"}]),
        "initContainer wait: readOnlyRootFilesystem is not true",
    ),
    "api token mounted": (
        lambda o: switcher_pod(o).pop("automountServiceAccountToken"),
        "automountServiceAccountToken is not false",
    ),
    "host network": (lambda o: switcher_pod(o).update(hostNetwork=True), "hostNetwork is true"),
    "statefulset": (as_kind("StatefulSet"), "StatefulSet k3sllm/switcher: container switcher: readOnly"),
    "daemonset": (as_kind("DaemonSet"), "DaemonSet k3sllm/switcher: container switcher: readOnly"),
    "job": (as_kind("Job"), "Job k3sllm/switcher: container switcher: allowPrivilegeEscalation"),
    "cronjob": (as_kind("CronJob"), "CronJob k3sllm/switcher: container switcher: capabilities"),
}


def test_the_builders_pass_every_rule():
    """The unbroken objects comply: each failure below comes from its break alone."""
    objects = base_objects()
    assert container_problems(objects) == []
    assert pod_security_problems(objects) == []
    assert network_policy_problems(objects) == []
    assert default_deny_problems(objects, "k3sllm") == []


@pytest.mark.parametrize("case", list(CONTAINER_BREAKS))
def test_the_container_rule_fails_on_a_broken_manifest(case):
    objects = base_objects()
    mutate, message = CONTAINER_BREAKS[case]
    mutate(objects)
    problems = container_problems(objects)
    assert any(message in p for p in problems), problems


def add_volume(volume: dict) -> Callable[[list[dict]], None]:
    return lambda o: switcher_pod(o)["volumes"].append(volume)


HOST_PATH = {"name": "weights", "hostPath": {"path": "/srv/k3sllm/models", "type": "Directory"}}
POD_SECURITY_BREAKS = {
    "hostPath under restricted": ("restricted", add_volume(HOST_PATH), "hostPath volume weights"),
    "hostPath under baseline": ("baseline", add_volume(HOST_PATH), "hostPath volume weights"),
    "nfs under restricted": (
        "restricted",
        add_volume({"name": "share", "nfs": {"server": "nas", "path": "/x"}}),
        "volume share of type ['nfs']",
    ),
    "hostPort under baseline": (
        "baseline",
        lambda o: switcher_container(o)["ports"][0].update(hostPort=8080),
        "hostPort",
    ),
    "privileged under baseline": (
        "baseline",
        lambda o: switcher_container(o)["securityContext"].update(privileged=True),
        "privileged",
    ),
    "SYS_ADMIN under baseline": (
        "baseline",
        lambda o: switcher_container(o)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        "adds capabilities ['SYS_ADMIN']",
    ),
    "host PID under baseline": ("baseline", lambda o: switcher_pod(o).update(hostPID=True), "hostPID"),
}


@pytest.mark.parametrize("case", list(POD_SECURITY_BREAKS))
def test_the_pod_security_rule_fails_on_a_broken_manifest(case):
    level, mutate, message = POD_SECURITY_BREAKS[case]
    objects = base_objects(enforce=level)
    mutate(objects)
    problems = pod_security_problems(objects)
    assert any(message in p and f"enforces {level}" in p for p in problems), problems


def test_the_pod_security_rule_follows_the_enforced_level():
    objects = base_objects(enforce="privileged")
    add_volume(HOST_PATH)(objects)
    assert pod_security_problems(objects) == []


def switcher_ingress(objects: list[dict]) -> dict:
    return find(objects, "NetworkPolicy", "switcher-ingress")["spec"]["ingress"][0]


MONITORING = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}


def new_policy(pod_selector: dict, rule: dict) -> Callable[[list[dict]], None]:
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "added", "namespace": "k3sllm"},
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": [rule]},
    }
    return lambda o: o.append(copy.deepcopy(policy))


NETWORK_BREAKS = {
    "whole monitoring namespace to the switcher": (
        lambda o: switcher_ingress(o)["from"].append({"namespaceSelector": MONITORING}),
        "switcher-ingress: ingress rule 0 admits a whole namespace",
    ),
    "no from": (lambda o: switcher_ingress(o).pop("from"), "admits every source (no from)"),
    "empty from": (lambda o: switcher_ingress(o).update({"from": []}), "admits every source (no from)"),
    "empty podSelector inside the namespaceSelector": (
        lambda o: switcher_ingress(o)["from"].append({"namespaceSelector": MONITORING, "podSelector": {}}),
        "every pod of its namespaces (empty podSelector)",
    ),
    "every pod of the own namespace": (
        lambda o: switcher_ingress(o)["from"].append({"podSelector": {}}),
        "every pod of its own namespace (empty podSelector)",
    ),
    "an address block": (
        lambda o: switcher_ingress(o)["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        "admits an ipBlock 0.0.0.0/0",
    ),
    "every port": (lambda o: switcher_ingress(o).pop("ports"), "opens every port"),
    "whole namespace to the engines": (
        new_policy(
            {"matchLabels": {"app.kubernetes.io/name": "vllm"}},
            {"from": [{"namespaceSelector": MONITORING}], "ports": [{"port": 8000}]},
        ),
        "NetworkPolicy k3sllm/added: ingress rule 0 admits a whole namespace",
    ),
    "whole namespace to every pod, engines included": (
        new_policy({}, {"from": [{"namespaceSelector": {}}], "ports": [{"port": 8000}]}),
        "NetworkPolicy k3sllm/added: ingress rule 0 admits a whole namespace",
    ),
    "whole namespace to engines chosen by expression": (
        new_policy(
            {"matchExpressions": [{"key": "k3sllm.io/model", "operator": "Exists"}]},
            {"from": [{"namespaceSelector": MONITORING}], "ports": [{"port": 8000}]},
        ),
        "NetworkPolicy k3sllm/added: ingress rule 0 admits a whole namespace",
    ),
}


@pytest.mark.parametrize("case", list(NETWORK_BREAKS))
def test_the_network_policy_rule_fails_on_a_broken_manifest(case):
    objects = base_objects()
    mutate, message = NETWORK_BREAKS[case]
    mutate(objects)
    problems = network_policy_problems(objects)
    assert any(message in p for p in problems), problems


def test_the_network_policy_rule_leaves_other_pods_to_the_connection_matrix():
    objects = base_objects()
    new_policy({"matchLabels": {"app.kubernetes.io/name": "litellm"}}, {"from": [{"namespaceSelector": {}}]})(
        objects
    )
    assert network_policy_problems(objects) == []


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_the_default_deny_rule_fails_without_the_baseline(direction):
    objects = [o for o in base_objects() if o["metadata"]["name"] != f"default-deny-{direction}"]
    assert default_deny_problems(objects, "k3sllm") == [
        f"namespace k3sllm: no default-deny {direction.capitalize()} policy"
    ]
    # A policy for every pod that allows something is no baseline.
    objects = base_objects()
    find(objects, "NetworkPolicy", f"default-deny-{direction}")["spec"][direction] = [{}]
    assert default_deny_problems(objects, "k3sllm") != []


def cluster_role(*rules: dict) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": list(rules),
    }


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["watch"]},
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
    ],
)
def test_the_cluster_role_rule_fails_on_a_secret_reader(rule):
    (problem,) = cluster_role_problems(
        [cluster_role({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}, rule)]
    )
    assert problem.startswith("ClusterRole reader: rule 1 can ")


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["one-secret"]},
        {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]},
    ],
)
def test_the_cluster_role_rule_passes_what_reads_no_secret_cluster_wide(rule):
    assert cluster_role_problems([cluster_role(rule)]) == []


# --- The evaluator behind the connection matrix ------------------------------------------------


def endpoints(objects: list[dict]) -> dict[str, Endpoint]:
    return {e.name: e for e in workload_endpoints(objects)}


def test_the_evaluator_allows_the_built_request_path_and_nothing_around_it():
    objects = base_objects()
    pods = endpoints(objects)
    switcher, engine = pods["switcher"], pods["vllm-m"]
    litellm = Endpoint("litellm", "k3sllm", {"app.kubernetes.io/name": "litellm"})
    assert connection_allowed(objects, litellm, switcher, 8080)
    assert connection_allowed(objects, engine, switcher, 8080)
    # The engines' ingress policy is the vllm role's, not among these objects: the baseline refuses.
    assert not connection_allowed(objects, switcher, engine, 8000)
    new_policy({"matchLabels": {"app.kubernetes.io/name": "vllm"}}, {"from": [{"podSelector": {}}]})(objects)
    assert connection_allowed(objects, switcher, engine, 8000)
    assert not connection_allowed(objects, switcher, engine, 8001)  # the switcher's egress names the port
    assert connection_allowed(objects, PROMETHEUS, switcher, 9090)
    assert not connection_allowed(objects, PROMETHEUS, switcher, 8080)  # metrics only, never /v1
    assert not connection_allowed(objects, litellm, switcher, 9090)
    assert connection_allowed(objects, switcher, COREDNS, 53, "UDP")
    assert not connection_allowed(objects, GRAFANA, switcher, 8080)
    assert not connection_allowed(objects, litellm, engine, 8000)  # the engine's ingress is the vllm role's
    assert not connection_allowed(objects, switcher, litellm, 4000)
    assert not connection_allowed(objects, switcher, switcher, 9999)
    assert not connection_allowed(objects, switcher, INTERNET, 443)
    assert not connection_allowed(objects, switcher, API_SERVICE, 443)


def test_the_evaluator_needs_both_the_egress_and_the_ingress_side():
    objects = base_objects()
    pods = endpoints(objects)
    switcher, engine = pods["switcher"], pods["vllm-m"]
    without_egress = [o for o in objects if o["metadata"]["name"] != "switcher-boot-egress"]
    assert not connection_allowed(without_egress, engine, switcher, 8080)
    without_ingress = [o for o in objects if o["metadata"]["name"] != "switcher-ingress"]
    assert not connection_allowed(without_ingress, engine, switcher, 8080)
    # With no policy at all, everything is open (Kubernetes' default).
    no_policies = [o for o in objects if o["kind"] != "NetworkPolicy"]
    assert connection_allowed(no_policies, GRAFANA, engine, 8000)


def test_the_evaluator_reads_selectors_named_ports_and_address_blocks():
    objects = base_objects()
    pods = endpoints(objects)
    switcher = pods["switcher"]
    rule = switcher_ingress(objects)
    # Two peers are alternatives; one peer with both selectors needs both.
    rule["from"] = [{"namespaceSelector": MONITORING}, {"podSelector": {"matchLabels": {"x": "y"}}}]
    assert connection_allowed(objects, GRAFANA, switcher, 8080)
    rule["from"] = [{"namespaceSelector": MONITORING, "podSelector": {"matchLabels": {"x": "y"}}}]
    assert not connection_allowed(objects, GRAFANA, switcher, 8080)
    # A podSelector alone means the policy's own namespace.
    rule["from"] = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}}}]
    assert not connection_allowed(objects, GRAFANA, switcher, 8080)
    # Named ports resolve against the destination's container ports.
    rule["from"] = [{"namespaceSelector": MONITORING}]
    rule["ports"] = [{"port": "http", "protocol": "TCP"}]
    assert connection_allowed(objects, GRAFANA, switcher, 8080)
    assert not connection_allowed(objects, GRAFANA, switcher, 8081)
    rule["ports"] = [{"port": 8000, "endPort": 8100}]
    assert connection_allowed(objects, GRAFANA, switcher, 8080)
    assert not connection_allowed(objects, GRAFANA, switcher, 8080, "UDP")
    egress = find(objects, "NetworkPolicy", "switcher-egress")["spec"]["egress"]
    egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]})
    assert connection_allowed(objects, switcher, INTERNET, 443)
    assert not connection_allowed(objects, switcher, API_SERVICE, 443)


def test_rendered_files_parse_back_to_what_the_rules_read(tmp_path):
    """The rules read objects as YAML files give them back (ints stay ints, 0o440 stays a number)."""
    objects = base_objects()
    path = tmp_path / "all.yml"
    path.write_text(yaml.safe_dump_all(objects))
    assert container_problems(list(yaml.safe_load_all(path.read_text()))) == []
