"""Stand-in for the Kubernetes API server (test double; no cluster runs on CI machines).

It speaks the subset of the real REST protocol that kubernetes.core's ``k8s`` and ``k8s_info``
modules use through the Python client:

- discovery: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``;
- objects: GET (one or a list, with an equality ``labelSelector``), POST (create, 409 when it
  exists), PATCH with ``application/merge-patch+json`` (RFC 7386) or server-side apply
  (``application/apply-patch+yaml``, see ``Handler._apply``), PUT, DELETE;
- ``?dryRun=All`` on writes answers as if written and stores nothing, as the real server does,
  which is how the modules implement check mode;
- server-managed metadata (uid, resourceVersion, generation, creationTimestamp);
- a pretend Deployment controller: every Deployment reports all replicas ready at once, so
  ``wait: true`` is exercised;
- admission as a real server does it: a write (dry runs too) into a namespace that does not exist
  is refused with 404 ``namespaces "x" not found``. K3s's own namespaces exist from the start.

It starts as a bare K3s server does: the built-in kinds plus the CRDs K3s ships (HelmChart,
HelmChartConfig, Traefik's). The kinds of cert-manager and the Prometheus Operator are served only
once their CustomResourceDefinitions exist, which the pretend controllers create:

- helm-controller: a HelmChart for cert-manager or kube-prometheus-stack installs that chart's CRDs
  (Established) and, for cert-manager, an Available ``cert-manager-webhook`` Deployment;
- GPU Operator: a HelmChart for gpu-operator makes every node advertise ``nvidia.com/gpu``
  (``gpus_per_node``) with the ``nvidia.com/gpu.present=true`` label, as feature discovery does;
- cert-manager: a Certificate is Ready at once and its Secret holds a (fake) PEM chain.

Unknown kinds get 404 like a cluster without the CRD. Every client write is recorded in ``writes``
so tests can assert that a second run wrote nothing; the pretend controllers' writes are not.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


# Served from the start by a K3s server: the built-in API and the CRDs K3s installs itself.
BUILTIN_KINDS = [
    Kind("", "v1", "Namespace", "namespaces", False),
    Kind("", "v1", "ConfigMap", "configmaps", True),
    Kind("", "v1", "Secret", "secrets", True),
    Kind("", "v1", "Service", "services", True),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", True),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    Kind("", "v1", "PersistentVolume", "persistentvolumes", False),
    Kind("", "v1", "Node", "nodes", False),
    Kind("apps", "v1", "Deployment", "deployments", True),
    Kind("apps", "v1", "StatefulSet", "statefulsets", True),
    Kind("apps", "v1", "DaemonSet", "daemonsets", True),
    Kind("batch", "v1", "Job", "jobs", True),
    Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True),
    Kind("networking.k8s.io", "v1", "Ingress", "ingresses", True),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Kind("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False),
    Kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    Kind("helm.cattle.io", "v1", "HelmChart", "helmcharts", True),
    Kind("helm.cattle.io", "v1", "HelmChartConfig", "helmchartconfigs", True),
    Kind("traefik.io", "v1alpha1", "IngressRoute", "ingressroutes", True),
    Kind("traefik.io", "v1alpha1", "Middleware", "middlewares", True),
    Kind("traefik.io", "v1alpha1", "TLSOption", "tlsoptions", True),
    Kind("traefik.io", "v1alpha1", "TLSStore", "tlsstores", True),
]
# Served once a chart has created their CustomResourceDefinition.
CHART_CRDS = {
    "kube-prometheus-stack": [
        Kind("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", True),
        Kind("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", True),
    ],
    "cert-manager": [
        Kind("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers", False),
        Kind("cert-manager.io", "v1", "Issuer", "issuers", True),
        Kind("cert-manager.io", "v1", "Certificate", "certificates", True),
    ],
}
CRD_KINDS = [kind for kinds in CHART_CRDS.values() for kind in kinds]
K3S_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nc3RhbmQtaW4gY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def builtin(kind: str) -> Kind:
    return next(k for k in BUILTIN_KINDS if k.kind == kind)


def crd_name(kind: Kind) -> str:
    return f"{kind.plural}.{kind.group}"


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# /api/v1/... or /apis/<group>/<version>/..., then optional namespaces/<ns>/, then plural[/name]
PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?)?/?$"
)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def with_status(kind: Kind, obj: dict) -> None:
    """What the pretend controllers report at once: Deployments ready, Certificates issued."""
    if kind.kind == "Deployment":
        replicas = obj.get("spec", {}).get("replicas", 1)
        obj["status"] = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
    elif kind.kind == "Certificate":
        obj["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}


@dataclass
class Store:
    objects: dict[tuple, dict] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)
    version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        for (k, ns, n), obj in self.objects.items():
            if k.kind == kind and n == name and (ns or None) == namespace:
                return obj
        return None

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, _ns, n) in self.objects if k.kind == kind)

    def put(self, kind: Kind, obj: dict) -> dict:
        """Store an object as a controller would (not a client write: not recorded in ``writes``)."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
        meta = obj["metadata"]
        key = (kind, meta.get("namespace") if kind.namespaced else None, meta["name"])
        before = (self.objects.get(key) or {}).get("metadata", {})
        meta.setdefault("uid", before.get("uid") or str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", before.get("creationTimestamp") or "2026-11-22T00:00:00Z")
        meta.setdefault("generation", before.get("generation", 1))
        with_status(kind, obj)
        meta["resourceVersion"] = self.next_version()
        self.objects[key] = obj
        return obj

    def served(self) -> list[Kind]:
        """The built-in kinds, and the custom kinds whose CRD exists."""
        crds = {n for (k, _ns, n) in list(self.objects) if k.kind == "CustomResourceDefinition"}
        return BUILTIN_KINDS + [k for k in CRD_KINDS if crd_name(k) in crds]

    def namespace_exists(self, name: str) -> bool:
        return any(k.kind == "Namespace" and n == name for (k, _ns, n) in list(self.objects))


def status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class Handler(BaseHTTPRequestHandler):
    server: KubeApiServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output readable
        pass

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        match = PATH.match(url.path)
        if not match:
            return url.path, query, None, None, None
        group = "" if match["core"] else match["group"]
        version = match["core"] or match["version"]
        plural, name, namespace = match["plural"], match["name"], match["ns"]
        # /api/v1/namespaces/<name> is the Namespace object itself, not a namespace scope.
        if plural is None and namespace is not None:
            plural, name, namespace = "namespaces", namespace, None
        served = self.server.store.served()
        kind = next((k for k in served if (k.group, k.version, k.plural) == (group, version, plural)), None)
        return url.path, query, kind, namespace, name

    # -- discovery --------------------------------------------------------------------------
    def _discovery(self, path: str) -> dict | None:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.5+k3s1", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for k in self.server.store.served():
                if k.group and k.version not in groups.setdefault(k.group, []):
                    groups[k.group].append(k.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        match = re.match(r"^/(?:api/(v1)|apis/([^/]+)/([^/]+))/?$", path)
        if match:
            group_version = match[1] or f"{match[2]}/{match[3]}"
            resources = [
                {
                    "name": k.plural,
                    "singularName": k.kind.lower(),
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": VERBS,
                }
                for k in self.server.store.served()
                if k.group_version == group_version
            ]
            if resources:
                return {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": group_version,
                    "resources": resources,
                }
        return None

    # -- verbs ------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path, query, kind, namespace, name = self._route()
        doc = self._discovery(path)
        if doc is not None:
            return self._send(200, doc)
        if kind is None:
            return self._send(
                404, status(404, "NotFound", f"the server could not find the requested resource {path}")
            )
        store = self.server.store
        with store.lock:
            if name:
                obj = store.objects.get((kind, namespace, name))
                if obj is None:
                    return self._send(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
                return self._send(200, obj)
            wanted = dict(
                pair.split("=", 1) for pair in query.get("labelSelector", "").split(",") if "=" in pair
            )
            items = [
                copy.deepcopy(obj)
                for (k, ns, _n), obj in store.objects.items()
                if k == kind
                and (namespace is None or ns == namespace)
                and all(
                    (obj["metadata"].get("labels") or {}).get(key) == value for key, value in wanted.items()
                )
            ]
            for item in items:  # list items carry no kind, as from a real server
                item.pop("kind", None)
                item.pop("apiVersion", None)
            return self._send(
                200,
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": kind.group_version,
                    "metadata": {"resourceVersion": str(store.version)},
                    "items": items,
                },
            )

    def _write(self, kind: Kind, namespace: str | None, obj: dict, dry_run: bool, verb: str) -> dict:
        store = self.server.store
        key = (kind, namespace if kind.namespaced else None, obj["metadata"]["name"])
        previous = store.objects.get(key)
        obj["apiVersion"], obj["kind"] = kind.group_version, kind.kind
        meta = obj["metadata"]
        if key[1] is None:
            meta.pop("namespace", None)
        else:
            meta["namespace"] = key[1]
        before = (previous or {}).get("metadata", {})
        meta["uid"] = before.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = before.get("creationTimestamp") or "2026-11-22T00:00:00Z"
        generation = before.get("generation", 0)
        meta["generation"] = (
            generation + 1 if previous is None or previous.get("spec") != obj.get("spec") else generation
        )
        if kind.kind == "Secret" and "stringData" in obj:  # the API server folds stringData into data
            data = obj.get("data") or {}
            for item, value in obj.pop("stringData").items():
                data[item] = base64.b64encode(value.encode()).decode()
            obj["data"] = data
        with_status(kind, obj)
        meta["resourceVersion"] = before.get("resourceVersion")
        if previous == obj:  # a no-op write changes nothing, resourceVersion included
            return obj
        meta["resourceVersion"] = str(store.version + 1) if dry_run else store.next_version()
        if not dry_run:
            store.objects[key] = obj
            store.writes.append(f"{verb} {kind.kind}/{meta['name']}")
            self.server.react(kind, obj)
        return obj

    def _mutate(self, verb: str) -> None:
        _path, query, kind, namespace, name = self._route()
        if kind is None:
            return self._send(
                404, status(404, "NotFound", "the server could not find the requested resource")
            )
        dry_run = query.get("dryRun") == "All"
        body = self._body()
        store = self.server.store
        with store.lock:
            # NamespaceLifecycle admission, which runs for dry runs too.
            if verb != "DELETE" and kind.namespaced and namespace and not store.namespace_exists(namespace):
                return self._send(404, status(404, "NotFound", f'namespaces "{namespace}" not found'))
            key = (kind, namespace if kind.namespaced else None, name or body.get("metadata", {}).get("name"))
            existing = store.objects.get(key)
            if verb == "POST":
                if existing is not None:
                    return self._send(
                        409, status(409, "AlreadyExists", f'{kind.plural} "{key[2]}" already exists')
                    )
                return self._send(201, self._write(kind, namespace, body, dry_run, "create"))
            if existing is None and verb != "PATCH":
                return self._send(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
            if verb == "DELETE":
                if not dry_run:
                    del store.objects[key]
                    store.writes.append(f"delete {kind.kind}/{name}")
                    if kind.kind == "Namespace":
                        for other in [k for k in store.objects if k[1] == name]:
                            del store.objects[other]
                return self._send(200, existing)
            content_type = self.headers.get("Content-Type", "")
            if verb == "PATCH" and "apply-patch" in content_type:
                return self._apply(kind, namespace, existing, body, query, dry_run)
            if existing is None:
                return self._send(404, status(404, "NotFound", f'{kind.plural} "{name}" not found'))
            if verb == "PATCH" and "merge-patch" not in content_type:
                return self._send(
                    415,
                    status(
                        415, "UnsupportedMediaType", f"stand-in supports merge-patch only, got {content_type}"
                    ),
                )
            updated = merge_patch(existing, body) if verb == "PATCH" else body
            if verb == "PATCH" and updated == existing:
                return self._send(200, existing)
            return self._send(200, self._write(kind, namespace, updated, dry_run, verb.lower()))

    def _apply(self, kind: Kind, namespace: str | None, existing, body: dict, query: dict, dry_run: bool):
        """Server-side apply (``application/apply-patch+yaml``): creates the object or merges the
        applied fields into it. Field ownership is not modelled: every apply acts as if it were
        forced, so conflicts between managers never arise (the real server answers 409 without
        ``force=true``)."""
        if not query.get("fieldManager"):
            message = "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch"
            return self._send(422, status(422, "Invalid", message))
        if existing is None:
            return self._send(201, self._write(kind, namespace, body, dry_run, "apply"))
        updated = merge_patch(existing, body)
        if updated == existing:
            return self._send(200, existing)
        return self._send(200, self._write(kind, namespace, updated, dry_run, "apply"))

    def do_POST(self) -> None:
        self._mutate("POST")

    def do_PATCH(self) -> None:
        self._mutate("PATCH")

    def do_PUT(self) -> None:
        self._mutate("PUT")

    def do_DELETE(self) -> None:
        self._mutate("DELETE")


class KubeApiServer(ThreadingHTTPServer):
    """Run with ``with KubeApiServer() as api: ...``; ``api.url`` is the base URL."""

    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        nodes: tuple[str, ...] = ("llm",),
        gpus_per_node: int = 1,
        charts: tuple[str, ...] = (),
        cpus_per_node: int = 16,
    ) -> None:
        """``nodes``: the cluster's nodes; ``gpus_per_node``: what the GPU Operator makes each advertise
        (0: a node whose GPU never shows up); ``charts``: charts already installed (their CRDs exist);
        ``cpus_per_node``: the cores each node reports, as the kubelet does in ``status.capacity``."""
        super().__init__((host, port), Handler)
        self.store = Store()
        self.gpus_per_node = gpus_per_node
        namespace = builtin("Namespace")
        node = builtin("Node")
        for name in K3S_NAMESPACES:
            self.store.put(namespace, {"metadata": {"name": name}, "status": {"phase": "Active"}})
        for name in nodes:
            labels = {"kubernetes.io/hostname": name, "node-role.kubernetes.io/control-plane": "true"}
            self.store.put(
                node,
                {
                    "metadata": {"name": name, "labels": labels},
                    "status": {
                        "allocatable": {"cpu": str(cpus_per_node)},
                        "capacity": {"cpu": str(cpus_per_node)},
                    },
                },
            )
        for chart in charts:
            self.install_chart(chart, chart)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    # -- pretend controllers (called with the store locked) -------------------------------------
    def react(self, kind: Kind, obj: dict) -> None:
        """What the cluster's controllers do after a client write."""
        if kind.kind == "HelmChart":
            self.install_chart(obj["metadata"]["name"], obj.get("spec", {}).get("targetNamespace", "default"))
        elif kind.kind == "Certificate" and obj.get("spec", {}).get("secretName"):
            secret = builtin("Secret")
            pem = base64.b64encode(FAKE_PEM.encode()).decode()
            meta = {"name": obj["spec"]["secretName"], "namespace": obj["metadata"]["namespace"]}
            data = {"tls.crt": pem, "ca.crt": pem, "tls.key": base64.b64encode(b"stand-in key").decode()}
            self.store.put(secret, {"metadata": meta, "type": "kubernetes.io/tls", "data": data})

    def install_chart(self, chart: str, namespace: str) -> None:
        """helm-controller's install of the charts the platform uses, reduced to what roles wait on."""
        crd = builtin("CustomResourceDefinition")
        for kind in CHART_CRDS.get(chart, []):
            # Like Helm (crds/ folder): a chart's CRDs are created when missing, never upgraded.
            if self.store.get("CustomResourceDefinition", crd_name(kind)) is not None:
                continue
            spec = {
                "group": kind.group,
                "names": {"kind": kind.kind, "plural": kind.plural},
                "scope": "Namespaced" if kind.namespaced else "Cluster",
                "versions": [{"name": kind.version, "served": True, "storage": True}],
            }
            established = {"conditions": [{"type": "Established", "status": "True"}]}
            self.store.put(crd, {"metadata": {"name": crd_name(kind)}, "spec": spec, "status": established})
        if chart == "cert-manager":
            deployment = builtin("Deployment")
            webhook = {
                "metadata": {"name": "cert-manager-webhook", "namespace": namespace},
                "spec": {"replicas": 1},
            }
            self.store.put(deployment, webhook)
        if chart == "gpu-operator" and self.gpus_per_node:
            for (kind, _ns, _name), node in list(self.store.objects.items()):
                if kind.kind == "Node":
                    node = copy.deepcopy(node)
                    node["metadata"]["labels"]["nvidia.com/gpu.present"] = "true"
                    node["status"]["allocatable"]["nvidia.com/gpu"] = str(self.gpus_per_node)
                    node["status"].setdefault("capacity", {})["nvidia.com/gpu"] = str(self.gpus_per_node)
                    self.store.put(kind, node)

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def kubeconfig(self) -> str:
        """A kubeconfig pointing at this stand-in, as the k3s role would fetch one."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                "users": [{"name": "admin", "user": {"token": "standin-token"}}],
                "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "admin"}}],
                "current-context": "standin",
            }
        )

    def __enter__(self) -> KubeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
