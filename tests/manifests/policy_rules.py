"""Security rules over rendered Kubernetes objects, and a small NetworkPolicy evaluator.

Each rule returns a list of problems (empty when the objects comply), each naming the object, so the
policy tests can show every rule failing on a deliberately broken manifest.

The evaluator follows the NetworkPolicy semantics of networking.k8s.io/v1: a pod selected by no
policy of a direction is open in that direction; a selected pod admits only what some rule of a
policy selecting it allows; a connection needs the source's egress and the destination's ingress.
ipBlock peers are matched against addresses outside the pod network only (what a CNI does for pod
IPs is implementation-defined, so a pod is never assumed to match one).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet", "CronJob", "Pod"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
ENGINE_LABELS = {"app.kubernetes.io/name": "vllm"}
SWITCHER_LABELS = {"app.kubernetes.io/name": "switcher"}
# Pods whose every port must be reachable only from named pods (vLLM's dev routes have no auth; the
# switcher's /v1 has none either, the gateway in front of it does the authentication).
PROTECTED = (ENGINE_LABELS, SWITCHER_LABELS)
READ_VERBS = {"get", "list", "watch", "*"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}


def name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def pod_template(obj: Mapping[str, Any]) -> dict | None:
    """The pod metadata and spec a workload object creates, as {"metadata": ..., "spec": ...}."""
    kind = obj.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    if kind == "Pod":
        return {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template") or {}
    return {"metadata": template.get("metadata") or {}, "spec": template.get("spec") or {}}


def all_containers(spec: Mapping[str, Any]) -> list[tuple[str, dict]]:
    return [
        (kind, container)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for container in spec.get(kind) or []
    ]


# --- Rule 1: every container runs locked down ---------------------------------------------------


def _effective(key: str, container_context: Mapping[str, Any], pod_context: Mapping[str, Any]) -> Any:
    """A container's setting wins over the pod's."""
    return container_context[key] if key in container_context else pod_context.get(key)


def container_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Non-root with a fixed UID, read-only root, no privilege escalation, all capabilities dropped,
    seccomp RuntimeDefault (pod or container level), and no ServiceAccount token or host namespace."""
    problems = []
    for obj in objects:
        pod = pod_template(obj)
        if pod is None:
            continue
        spec = pod["spec"]
        where = name_of(obj)
        pod_context = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(
                f"{where}: automountServiceAccountToken is not false (none of our pods calls the API)"
            )
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{where}: {host} is true")
        if not all_containers(spec):
            problems.append(f"{where}: no containers")
        for kind, container in all_containers(spec):
            context = container.get("securityContext") or {}
            label = f"{where}: {kind[:-1]} {container.get('name')}"

            if _effective("runAsNonRoot", context, pod_context) is not True:
                problems.append(f"{label}: runAsNonRoot is not true")
            uid = _effective("runAsUser", context, pod_context)
            if isinstance(uid, bool) or not isinstance(uid, int) or uid <= 0:
                problems.append(f"{label}: runAsUser is not a fixed non-root user id ({uid!r})")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{label}: readOnlyRootFilesystem is not true")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{label}: allowPrivilegeEscalation is not false")
            if context.get("privileged"):
                problems.append(f"{label}: privileged")
            capabilities = context.get("capabilities") or {}
            if "ALL" not in (capabilities.get("drop") or []):
                problems.append(f"{label}: capabilities do not drop ALL")
            if capabilities.get("add"):
                problems.append(f"{label}: capabilities add {capabilities['add']}")
            seccomp = (_effective("seccompProfile", context, pod_context) or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{label}: seccompProfile is {seccomp!r}, not RuntimeDefault")
    return problems


# --- Rule 2: every pod meets its namespace's Pod Security level ----------------------------------


def enforced_levels(objects: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {
        obj["metadata"]["name"]: (obj["metadata"].get("labels") or {}).get(
            "pod-security.kubernetes.io/enforce", "privileged"
        )
        for obj in objects
        if obj.get("kind") == "Namespace"
    }


def pod_security_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """The parts of the baseline and restricted Pod Security Standards a render can get wrong: what
    the API server would refuse to create in a namespace we render with that level enforced."""
    objects = list(objects)
    levels = enforced_levels(objects)
    problems = []
    for obj in objects:
        pod = pod_template(obj)
        level = levels.get((obj.get("metadata") or {}).get("namespace"), "privileged")
        if pod is None or level == "privileged":
            continue
        spec, where = pod["spec"], f"{name_of(obj)} (namespace enforces {level})"
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{where}: {host}")
        for volume in spec.get("volumes") or []:
            kinds = set(volume) - {"name"}
            if "hostPath" in kinds:
                problems.append(f"{where}: hostPath volume {volume['name']}")
            elif level == "restricted" and not kinds <= RESTRICTED_VOLUMES:
                problems.append(f"{where}: volume {volume['name']} of type {sorted(kinds)}")
        allowed_add = {"NET_BIND_SERVICE"} if level == "restricted" else BASELINE_CAPABILITIES
        for kind, container in all_containers(spec):
            context = container.get("securityContext") or {}
            label = f"{where}: {kind[:-1]} {container.get('name')}"
            if context.get("privileged"):
                problems.append(f"{label}: privileged")
            extra = set((context.get("capabilities") or {}).get("add") or []) - allowed_add
            if extra:
                problems.append(f"{label}: adds capabilities {sorted(extra)}")
            if any(port.get("hostPort") for port in container.get("ports") or []):
                problems.append(f"{label}: hostPort")
    return problems


# --- Rule 3: no NetworkPolicy opens an engine or the switcher to a whole namespace ---------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against a label set; an empty selector matches everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def is_empty_selector(selector: Mapping[str, Any] | None) -> bool:
    return not (selector or {}).get("matchLabels") and not (selector or {}).get("matchExpressions")


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def protected_pods(objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, dict]]:
    """(namespace, pod labels) of every rendered engine and switcher pod."""
    pods = []
    for obj in objects:
        pod = pod_template(obj)
        if pod is None:
            continue
        labels = pod["metadata"].get("labels") or {}
        if any(selector_matches({"matchLabels": protected}, labels) for protected in PROTECTED):
            pods.append(((obj.get("metadata") or {}).get("namespace"), labels))
    return pods


def network_policy_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """An ingress rule to an engine or the switcher must name its source pods (a podSelector, inside a
    namespaceSelector for another namespace) and its ports: no empty or missing ``from``, no
    namespaceSelector without podSelector, no empty podSelector, no ipBlock, no rule for every port."""
    objects = list(objects)
    targets = protected_pods(objects)
    problems = []
    for policy in objects:
        if policy.get("kind") != "NetworkPolicy" or "Ingress" not in policy_types(policy):
            continue
        spec, meta = policy.get("spec") or {}, policy.get("metadata") or {}
        if not any(
            namespace == meta.get("namespace") and selector_matches(spec.get("podSelector"), labels)
            for namespace, labels in targets
        ):
            continue
        where = name_of(policy)
        for index, rule in enumerate(spec.get("ingress") or []):
            label = f"{where}: ingress rule {index}"
            if not rule.get("from"):
                problems.append(f"{label} admits every source (no from)")
            if not rule.get("ports"):
                problems.append(f"{label} opens every port")
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    problems.append(f"{label} admits an ipBlock {peer['ipBlock'].get('cidr')}")
                elif "podSelector" not in peer:
                    problems.append(f"{label} admits a whole namespace {peer.get('namespaceSelector')}")
                elif is_empty_selector(peer["podSelector"]):
                    scope = "namespaces" if "namespaceSelector" in peer else "own namespace"
                    problems.append(f"{label} admits every pod of its {scope} (empty podSelector)")
    return problems


def default_deny_problems(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[str]:
    """Every pod of the namespace is selected for ingress and egress by a policy that allows nothing."""
    covered: set[str] = set()
    for policy in objects:
        spec, meta = policy.get("spec") or {}, policy.get("metadata") or {}
        if policy.get("kind") != "NetworkPolicy" or meta.get("namespace") != namespace:
            continue
        if is_empty_selector(spec.get("podSelector")):
            for direction in policy_types(policy):
                if not spec.get(direction.lower()):
                    covered.add(direction)
    return [
        f"namespace {namespace}: no default-deny {d} policy"
        for d in ("Ingress", "Egress")
        if d not in covered
    ]


# --- Rule 4: no ClusterRole of ours reads Secrets cluster-wide -----------------------------------


def cluster_role_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    problems = []
    for role in objects:
        if role.get("kind") != "ClusterRole":
            continue
        for index, rule in enumerate(role.get("rules") or []):
            groups = set(rule.get("apiGroups") or [])
            resources = set(rule.get("resources") or [])
            verbs = set(rule.get("verbs") or [])
            if (
                groups & {"", "*"}
                and resources & {"secrets", "*"}
                and verbs & READ_VERBS
                and not rule.get("resourceNames")
            ):
                problems.append(
                    f"{name_of(role)}: rule {index} can {sorted(verbs & READ_VERBS)} every Secret in the cluster"
                )
    return problems


# --- The evaluator: who may open a connection to whom --------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or an address outside the pod network (``ip``)."""

    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports
    ip: str | None = None


def workload_endpoints(objects: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    endpoints = []
    for obj in objects:
        pod = pod_template(obj)
        if pod is None:
            continue
        ports = {
            port["name"]: int(port["containerPort"])
            for _, container in all_containers(pod["spec"])
            for port in container.get("ports") or []
            if port.get("name")
        }
        endpoints.append(
            Endpoint(
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
                labels=dict(pod["metadata"].get("labels") or {}),
                ports=ports,
            )
        )
    return endpoints


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except") or []
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: other.namespace}):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def _port_matches(
    ports: list[Mapping[str, Any]] | None, destination: Endpoint, port: int, protocol: str
) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        number = destination.ports.get(wanted) if isinstance(wanted, str) else int(wanted)
        if number is not None and number <= port <= int(entry.get("endPort", number)):
            return True
    return False


def _side_allows(
    policies: list[Mapping[str, Any]],
    subject: Endpoint,
    other: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    peers_key = "from" if direction == "Ingress" else "to"
    selecting = [
        p
        for p in policies
        if subject.namespace is not None
        and p["metadata"].get("namespace") == subject.namespace
        and direction in policy_types(p)
        and selector_matches(p["spec"].get("podSelector"), subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction.lower()) or []:
            peers = rule.get(peers_key)
            if peers and not any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            ):
                continue
            if _port_matches(rule.get("ports"), destination, port, protocol):
                return True
    return False


def connection_allowed(
    objects: Iterable[Mapping[str, Any]],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    return _side_allows(
        policies, source, destination, destination, port, protocol, "Egress"
    ) and _side_allows(policies, destination, source, destination, port, protocol, "Ingress")
