"""Policies for the cluster platform's manifests: GPU Operator, TLS, monitoring, namespace baselines."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import REPO

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
INVENTORIES = {
    "example": REPO / "inventories" / "example",
    "acme-multinode": HERE / "inventories" / "acme-multinode",
    "airgap": HERE / "inventories" / "airgap",
}

K3S_CONTAINERD_CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
K3S_CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"
SELECTORS = [
    "serviceMonitorSelectorNilUsesHelmValues",
    "podMonitorSelectorNilUsesHelmValues",
    "ruleSelectorNilUsesHelmValues",
    "probeSelectorNilUsesHelmValues",
    "scrapeConfigSelectorNilUsesHelmValues",
]


def settings(rendered) -> dict:
    """The inventory's group_vars/all, merged (plain values only; templated ones stay strings)."""
    merged: dict = {}
    for path in sorted((INVENTORIES[rendered.folder.parent.name] / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def role_default(role: str, name: str):
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[name]


def setting(rendered, role: str, name: str):
    return settings(rendered).get(name, role_default(role, name))


def only(objects: list[dict], **match) -> dict:
    found = [o for o in objects if all(o["metadata"].get(k) == v or o.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one object matching {match}, found {len(found)}"
    return found[0]


def chart(rendered, name: str) -> dict:
    return only(rendered.of_kind("HelmChart"), name=name)


def values(helm_chart: dict) -> dict:
    return yaml.safe_load(helm_chart["spec"].get("valuesContent") or "{}") or {}


def keys_in(tree) -> set[str]:
    """Every mapping key anywhere in a parsed YAML tree."""
    if isinstance(tree, dict):
        return set(tree) | {k for value in tree.values() for k in keys_in(value)}
    if isinstance(tree, list):
        return {k for value in tree for k in keys_in(value)}
    return set()


def rendered_text(rendered) -> str:
    return "\n".join(path.read_text() for path in sorted(rendered.folder.rglob("*.yml")))


# GPU Operator ---------------------------------------------------------------------------------


def test_time_slicing_gives_every_catalog_model_a_gpu_slot(rendered):
    models = settings(rendered)["k3sllm_models"]
    override = setting(rendered, "gpu_operator", "gpu_operator_time_slicing_replicas")
    expected = override or max(len(models), 2)
    operator = values(chart(rendered, "gpu-operator"))
    config = operator["devicePlugin"]["config"]
    config_map = only(rendered.component("gpu-operator"), kind="ConfigMap", name=config["name"])
    assert config_map["metadata"]["namespace"] == chart(rendered, "gpu-operator")["spec"]["targetNamespace"]
    plugin = yaml.safe_load(config_map["data"][config["default"]])
    (resource,) = plugin["sharing"]["timeSlicing"]["resources"]
    assert resource == {"name": "nvidia.com/gpu", "replicas": expected}
    # Each engine asks for one slot.
    engines = [o for o in rendered.component("vllm") if o["kind"] == "Deployment"]
    assert len(engines) <= resource["replicas"]


def test_driver_is_host_installed_and_toolkit_set_for_k3s(rendered):
    operator = values(chart(rendered, "gpu-operator"))
    assert operator["driver"]["enabled"] is False
    manage = setting(rendered, "gpu_operator", "gpu_operator_manage_toolkit")
    assert operator["toolkit"]["enabled"] is manage
    if manage:
        env = {e["name"]: e["value"] for e in operator["toolkit"]["env"]}
        assert env["CONTAINERD_CONFIG"] == K3S_CONTAINERD_CONFIG
        assert env["CONTAINERD_SOCKET"] == K3S_CONTAINERD_SOCKET
        assert env["CONTAINERD_RUNTIME_CLASS"] == "nvidia"
    else:
        assert "env" not in operator["toolkit"]
    assert operator["operator"]["runtimeClass"] == "nvidia"


def test_dcgm_exporter_is_scraped(rendered):
    dcgm = values(chart(rendered, "gpu-operator"))["dcgmExporter"]
    assert dcgm["enabled"] is True
    assert dcgm["serviceMonitor"]["enabled"] is True


def test_at_least_one_inventory_lets_the_operator_manage_the_toolkit(rendered_all):
    managed = [r for r in rendered_all.values() if values(chart(r, "gpu-operator"))["toolkit"]["enabled"]]
    assert managed, "no test inventory exercises gpu_operator_manage_toolkit"


# Charts -----------------------------------------------------------------------------------------

CHART_PINS = {
    "gpu-operator": ("gpu_operator", "gpu_operator_chart_version", "gpu_operator_chart_dir"),
    "cert-manager": ("tls", "tls_cert_manager_chart_version", "tls_cert_manager_chart_dir"),
    "kube-prometheus-stack": ("observability", "observability_chart_version", "observability_chart_dir"),
}


def test_charts_are_pinned_or_embedded(rendered):
    for name, (role, version_key, dir_key) in CHART_PINS.items():
        spec = chart(rendered, name)["spec"]
        if setting(rendered, role, dir_key):
            assert "repo" not in spec and "chart" not in spec, f"{name}: airgap install names a repository"
            archive = base64.b64decode(spec["chartContent"], validate=True)
            assert gzip.decompress(archive), f"{name}: chartContent is not a gzip archive"
        else:
            assert "chartContent" not in spec
            assert spec["version"] == role_default(role, version_key), (
                f"{name}: version is not the pinned one"
            )


def test_airgap_images_come_from_the_mirror(rendered_all):
    rendered = rendered_all["airgap"]
    mirror = settings(rendered)["gpu_operator_image_registry"]
    operator = values(chart(rendered, "gpu-operator"))
    for component in ("operator", "validator", "devicePlugin", "dcgmExporter", "gfd", "toolkit"):
        assert operator[component]["repository"].startswith(mirror + "/"), component
    assert operator["node-feature-discovery"]["image"]["repository"].startswith(mirror + "/")
    assert (
        values(chart(rendered, "cert-manager"))["imageRegistry"] == settings(rendered)["tls_image_registry"]
    )
    stack = values(chart(rendered, "kube-prometheus-stack"))
    assert stack["global"]["imageRegistry"] == settings(rendered)["observability_image_registry"]


# TLS --------------------------------------------------------------------------------------------


def issuers(rendered) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered.of_kind("ClusterIssuer")}


def test_tls_mode_renders_its_issuers(rendered):
    mode = setting(rendered, "tls", "tls_mode")
    found = issuers(rendered)
    if mode == "selfsigned":
        assert "selfSigned" in found["k3sllm-selfsigned"]["spec"]
        ca = only(rendered.of_kind("Certificate"), name="k3sllm-ca")
        assert ca["spec"]["isCA"] is True
        assert ca["spec"]["issuerRef"]["name"] == "k3sllm-selfsigned"
        assert found["k3sllm-ca"]["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    elif mode == "acme":
        (issuer,) = found.values()
        acme = issuer["spec"]["acme"]
        assert "@" in acme["email"]
        assert acme["email"] == settings(rendered)["tls_acme_email"]
        assert acme["server"].startswith("https://")
        env = setting(rendered, "tls", "tls_acme_environment")
        assert ("staging" in acme["server"]) == (env == "staging")
        assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "traefik"}}}]
    else:
        assert not found, "bring-your-own mode needs no issuer"
        secret = only(rendered.of_kind("Secret"), name="k3sllm-tls-byo")
        assert secret["type"] == "kubernetes.io/tls"
        assert set(secret["data"]) == {"tls.crt", "tls.key"}


def test_the_three_tls_modes_are_exercised(rendered_all):
    modes = {setting(r, "tls", "tls_mode") for r in rendered_all.values()}
    assert modes == {"selfsigned", "acme", "byo"}


def test_byo_key_never_reaches_the_render_folder(rendered):
    text = rendered_text(rendered)
    assert "PRIVATE KEY" not in text
    key_file = settings(rendered).get("tls_byo_key_file")
    if key_file:
        key = (INVENTORIES[rendered.folder.parent.name] / "tls" / Path(key_file).name).read_text().strip()
        assert base64.b64encode(key.encode()).decode() not in text


def test_every_service_hostname_is_served_with_a_certificate(rendered):
    store = only(rendered.of_kind("TLSStore"), name="default")
    served = {c["secretName"] for c in store["spec"]["certificates"]}
    assert store["spec"]["defaultCertificate"]["secretName"] in served
    certificates = {
        c["spec"]["secretName"]: c for c in rendered.of_kind("Certificate") if not c["spec"].get("isCA")
    }
    hosts = set()
    for secret in served:
        if secret in certificates:
            assert certificates[secret]["metadata"]["namespace"] == store["metadata"]["namespace"]
            hosts.update(certificates[secret]["spec"]["dnsNames"])
        else:
            assert only(rendered.of_kind("Secret"), name=secret)["metadata"]["namespace"] == "kube-system"
    grafana = values(chart(rendered, "kube-prometheus-stack"))["grafana"]["ingress"]
    assert grafana["enabled"] is True
    assert grafana["tls"] == [{"hosts": grafana["hosts"]}]
    if setting(rendered, "tls", "tls_mode") != "byo":
        assert set(grafana["hosts"]) <= hosts, "Grafana's hostname has no certificate"


def test_traefik_redirects_to_https_with_hsts_and_tls12(rendered):
    config = only(rendered.of_kind("HelmChartConfig"), name="traefik")
    args = values(config)["additionalArguments"]
    assert "--entryPoints.web.http.redirections.entryPoint.scheme=https" in args
    assert "--entryPoints.web.http.redirections.entryPoint.to=:443" in args
    (middlewares,) = [
        a.split("=", 1)[1] for a in args if a.startswith("--entryPoints.websecure.http.middlewares=")
    ]
    name = middlewares.removesuffix("@kubernetescrd").removeprefix("kube-system-")
    hsts = only(rendered.of_kind("Middleware"), name=name)
    assert hsts["metadata"]["namespace"] == "kube-system"
    assert hsts["spec"]["headers"]["stsSeconds"] >= 15552000
    option = only(rendered.of_kind("TLSOption"), name="default")
    assert option["spec"]["minVersion"] in {"VersionTLS12", "VersionTLS13"}


def test_cert_manager_installs_its_crds(rendered):
    cert_manager = values(chart(rendered, "cert-manager"))
    assert cert_manager["crds"]["enabled"] is True
    assert "installCRDs" not in cert_manager


# Observability ----------------------------------------------------------------------------------


def test_prometheus_selects_monitors_and_rules_from_everywhere(rendered):
    spec = values(chart(rendered, "kube-prometheus-stack"))["prometheus"]["prometheusSpec"]
    for key in SELECTORS:
        assert spec[key] is False, key
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "local-path"
    assert spec["retention"]


def test_grafana_password_only_by_reference(rendered):
    stack = chart(rendered, "kube-prometheus-stack")
    grafana = values(stack)["grafana"]
    assert not {"adminPassword", "password"} & keys_in(grafana), "Grafana's password is set inline"
    admin = grafana["admin"]
    secret = only(rendered.of_kind("Secret"), name=admin["existingSecret"])
    assert secret["metadata"]["namespace"] == stack["spec"]["targetNamespace"]
    assert {admin["userKey"], admin["passwordKey"]} <= set(secret["stringData"])
    text = rendered_text(rendered)
    generated = rendered.folder.parent / "artifacts" / "secrets" / "grafana-admin-password"
    password = settings(rendered).get("observability_grafana_admin_password") or generated.read_text().strip()
    assert len(password) >= 12
    assert password not in text, "the Grafana admin password was rendered"


def test_grafana_sidecar_loads_our_dashboards(rendered):
    stack = chart(rendered, "kube-prometheus-stack")
    sidecar = values(stack)["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert sidecar["searchNamespace"] == [stack["spec"]["targetNamespace"]]
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")
    # Every dashboard ConfigMap we ship is where the sidecar looks.
    for config_map in rendered.component("observability"):
        if config_map["kind"] == "ConfigMap":
            assert config_map["metadata"]["namespace"] == stack["spec"]["targetNamespace"]


# Rules for the Grafana chart's values (grafana-community/helm-charts, charts/grafana): its
# templates/clusterrole.yaml grants get/list/watch on configmaps AND secrets cluster-wide whenever a
# sidecar is on and rbac.namespaced is false; templates/role.yaml grants the same in its namespace.
GRAFANA_SIDECARS = ("dashboards", "datasources", "alerts", "plugins", "notifiers")


def grafana_secret_reach(grafana: dict, namespace: str, objects: list[dict]) -> list[str]:
    """Problems that would let Grafana (the one UI behind the Ingress) read Secrets."""
    problems = []
    rbac = grafana.get("rbac") or {}
    sidecars = grafana.get("sidecar") or {}
    enabled = [name for name in GRAFANA_SIDECARS if (sidecars.get(name) or {}).get("enabled")]
    # kube-prometheus-stack turns the dashboards and datasources sidecars on by default.
    enabled = sorted(set(enabled) | {"dashboards", "datasources"})
    if not rbac.get("namespaced"):
        problems.append("rbac.namespaced is not true: the chart creates a ClusterRole reading every Secret")
    if rbac.get("extraClusterRoleRules"):
        problems.append("rbac.extraClusterRoleRules adds a ClusterRole")
    for name in enabled:
        sidecar = sidecars.get(name) or {}
        if sidecar.get("searchNamespace") != [namespace]:
            problems.append(
                f"sidecar.{name}.searchNamespace is {sidecar.get('searchNamespace')!r}, not [{namespace!r}]"
            )
        if sidecar.get("resource") != "configmap":
            problems.append(f"sidecar.{name}.resource is {sidecar.get('resource')!r}: it would list Secrets")
    role_name = rbac.get("useExistingRole")
    if not role_name:
        problems.append(
            "rbac.useExistingRole is unset: the chart's own Role reads every Secret of its namespace"
        )
    else:
        roles = [
            o
            for o in objects
            if o["kind"] == "Role"
            and o["metadata"]["name"] == role_name
            and o["metadata"].get("namespace") == namespace
        ]
        if len(roles) != 1:
            problems.append(f"rbac.useExistingRole names {role_name!r}, which is not rendered in {namespace}")
        for role in roles:
            for rule in role.get("rules") or []:
                if {"secrets", "*"} & set(rule.get("resources") or []):
                    problems.append(f"Role {role_name} grants {rule['verbs']} on {rule['resources']}")
    return problems


def test_grafana_reads_no_secret_and_no_other_namespace(rendered):
    stack = chart(rendered, "kube-prometheus-stack")
    grafana = values(stack)["grafana"]
    namespace = stack["spec"]["targetNamespace"]
    assert grafana_secret_reach(grafana, namespace, rendered.objects) == []


BROKEN_GRAFANA = {
    "cluster-wide role": (["rbac", "namespaced"], False, "rbac.namespaced"),
    "sidecar searches everywhere": (["sidecar", "dashboards", "searchNamespace"], "ALL", "searchNamespace"),
    "datasources from another namespace": (
        ["sidecar", "datasources", "searchNamespace"],
        ["k3sllm"],
        "datasources",
    ),
    "sidecar lists secrets": (["sidecar", "dashboards", "resource"], "both", "would list Secrets"),
    "chart's own role": (["rbac", "useExistingRole"], None, "useExistingRole is unset"),
}


@pytest.mark.parametrize("case", list(BROKEN_GRAFANA))
def test_each_grafana_rule_fails_on_broken_values(rendered_all, case):
    rendered = rendered_all["example"]
    stack = chart(rendered, "kube-prometheus-stack")
    grafana = values(stack)["grafana"]
    path, value, message = BROKEN_GRAFANA[case]
    node = grafana
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = grafana_secret_reach(grafana, stack["spec"]["targetNamespace"], rendered.objects)
    assert any(message in p for p in problems), problems


def test_grafana_rule_fails_when_its_role_reads_secrets(rendered_all):
    rendered = rendered_all["example"]
    stack = chart(rendered, "kube-prometheus-stack")
    grafana = values(stack)["grafana"]
    objects = [dict(o) for o in rendered.objects]
    for index, obj in enumerate(objects):
        if obj["kind"] == "Role" and obj["metadata"]["name"] == grafana["rbac"]["useExistingRole"]:
            objects[index] = {
                **obj,
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
            }
    problems = grafana_secret_reach(grafana, stack["spec"]["targetNamespace"], objects)
    assert any("grants" in p for p in problems), problems


RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_grafana_and_its_sidecars_run_restricted(rendered):
    grafana = values(chart(rendered, "kube-prometheus-stack"))["grafana"]
    for where in (grafana["containerSecurityContext"], grafana["sidecar"]["securityContext"]):
        assert RESTRICTED_CONTAINER.items() <= where.items(), where
    assert grafana["securityContext"]["runAsNonRoot"] is True
    assert grafana["securityContext"]["runAsUser"] != 0
    # The root init container (chown) and the test pod stay off; /tmp is the only extra writable path.
    assert grafana["initChownData"]["enabled"] is False
    assert grafana["testFramework"]["enabled"] is False
    assert grafana["extraEmptyDirMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_kube_prometheus_stack_pin_is_a_current_major_with_its_crds(rendered):
    major = int(str(setting(rendered, "observability", "observability_chart_version")).split(".")[0])
    assert major >= 89
    crds = role_default("observability", "observability_crds")
    assert len(crds) == 10 and all(name.startswith("monitoring.coreos.com_") for name in crds)


def test_every_dashboard_file_becomes_a_config_map(rendered):
    files = sorted((REPO / "files" / "dashboards").glob("*.json"))
    maps = [o for o in rendered.component("observability") if o["kind"] == "ConfigMap"]
    assert len(maps) == len(files)
    by_key = {key: (m, value) for m in maps for key, value in m["data"].items()}
    for path in files:
        config_map, content = by_key[path.name]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(content) == json.loads(path.read_text())


def test_every_alert_file_becomes_a_prometheus_rule(rendered):
    files = sorted((REPO / "files" / "alerts").glob("*.yml"))
    rules = rendered.of_kind("PrometheusRule")
    ours = [r for r in rules if r["_file"].parent.name == "observability"]
    assert len(ours) == len(files)
    for path in files:
        source = yaml.safe_load(path.read_text())["groups"]
        rule = only(ours, name="k3sllm-" + path.stem)
        assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source]
        alerts = [r.get("alert") or r.get("record") for g in rule["spec"]["groups"] for r in g["rules"]]
        assert alerts == [r.get("alert") or r.get("record") for g in source for r in g["rules"]]
    # Prometheus templates survive Ansible's templating untouched.
    assert any("{{ $labels." in json.dumps(r["spec"]) for r in ours)


def test_ttft_alert_follows_its_setting(rendered):
    threshold = setting(rendered, "observability", "observability_vllm_ttft_p95_seconds")
    found = [
        rule
        for obj in rendered.of_kind("PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "K3sllmVllmTtftP95High"
    ]
    if not found:
        pytest.skip("files/alerts has no K3sllmVllmTtftP95High alert yet")
    (rule,) = found
    assert rule["expr"].rstrip().endswith(f"> {threshold:g}")
    assert f"above {threshold:g}s" in rule["annotations"]["summary"]


def test_opentelemetry_collector_only_when_asked(rendered):
    enabled = setting(rendered, "observability", "observability_otel_collector_enabled")
    collectors = [
        c for c in rendered.of_kind("HelmChart") if c["metadata"]["name"] == "opentelemetry-collector"
    ]
    assert len(collectors) == int(enabled)
    if enabled:
        config = values(collectors[0])
        assert config["mode"] == "deployment"
        assert config["image"]["repository"]
        endpoint = settings(rendered).get("observability_otel_traces_endpoint")
        exporters = config["config"]["service"]["pipelines"]["traces"]["exporters"]
        assert exporters == (["otlp"] if endpoint else ["debug"])


# Namespace baselines ----------------------------------------------------------------------------


def test_every_namespace_we_create_denies_ingress_by_default(rendered):
    policies = rendered.of_kind("NetworkPolicy")
    for namespace in rendered.of_kind("Namespace"):
        name = namespace["metadata"]["name"]
        assert any(
            p["metadata"]["namespace"] == name
            and p["spec"]["podSelector"] == {}
            and p["spec"]["policyTypes"] == ["Ingress"]
            and not p["spec"].get("ingress")
            for p in policies
        ), f"namespace {name} has no default-deny ingress policy"


PROMETHEUS_PODS = {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_prometheus_may_scrape_the_platform_namespaces(rendered):
    monitoring = chart(rendered, "kube-prometheus-stack")["spec"]["targetNamespace"]
    for component in ("gpu-operator", "cert-manager"):
        policies = [o for o in rendered.component(component) if o["kind"] == "NetworkPolicy"]
        peers = [
            peer
            for p in policies
            for rule in p["spec"].get("ingress") or []
            for peer in rule.get("from") or []
        ]
        assert {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring}},
            "podSelector": PROMETHEUS_PODS,
        } in peers, component
        # Prometheus's own pods, never the whole monitoring namespace (Grafana lives there too).
        assert not [p for p in peers if "namespaceSelector" in p and "podSelector" not in p], component


def test_only_traefik_reaches_grafana_from_outside(rendered):
    stack = chart(rendered, "kube-prometheus-stack")
    namespace = stack["spec"]["targetNamespace"]
    policies = [o for o in rendered.component("kube-prometheus-stack") if o["kind"] == "NetworkPolicy"]
    grafana = [
        p
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "grafana"}
    ]
    (policy,) = grafana
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
        }
    ]
    assert rule["ports"] == [{"port": 3000, "protocol": "TCP"}]
    assert policy["metadata"]["namespace"] == namespace


WEBHOOK_PORTS = {10250}


def webhook_exposure(policies: list[dict], api_server_cidrs: list[str]) -> list[str]:
    """Problems: a rule that opens a webhook port to anything but the API server's address ranges or
    on every pod of a namespace, or a rule that admits every source on every port."""
    problems = []
    for policy in policies:
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []}
            sources = rule.get("from") or []
            if not ports and not sources:
                problems.append(f"{name}: admits every source on every port")
            if not ports & WEBHOOK_PORTS:
                continue
            if not sources:
                problems.append(f"{name}: webhook port open to any source")
            for peer in sources:
                block = peer.get("ipBlock") or {}
                if block.get("cidr") not in api_server_cidrs or block.get("except"):
                    problems.append(f"{name}: webhook port open to {peer}")
            if policy["spec"]["podSelector"] == {}:
                problems.append(f"{name}: webhook port opened on every pod of the namespace")
    return problems


def api_server_cidrs(rendered) -> list[str]:
    cidrs = setting(rendered, "k3sllm", "k3sllm_api_server_cidrs")
    cluster = setting(rendered, "k3sllm", "k3sllm_cluster_cidr")
    return [cluster if "k3sllm_cluster_cidr" in c else c for c in cidrs]


@pytest.mark.parametrize("component", ["kube-prometheus-stack", "cert-manager"])
def test_webhook_ports_admit_only_the_api_server(rendered, component):
    policies = [o for o in rendered.component(component) if o["kind"] == "NetworkPolicy"]
    cidrs = api_server_cidrs(rendered)
    assert any(
        (peer.get("ipBlock") or {}).get("cidr") in cidrs
        for p in policies
        for rule in p["spec"].get("ingress") or []
        for peer in rule.get("from") or []
    ), f"{component}: no policy admits the API server to its webhook"
    assert webhook_exposure(policies, cidrs) == []


BROKEN_WEBHOOK_RULES = {
    "any source": {"ports": [{"port": 10250, "protocol": "TCP"}]},
    "whole namespace": {
        "from": [{"namespaceSelector": {}}],
        "ports": [{"port": 10250, "protocol": "TCP"}],
    },
    "everything": {},
    "another range": {
        "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"port": 10250, "protocol": "TCP"}],
    },
}


@pytest.mark.parametrize("case", list(BROKEN_WEBHOOK_RULES))
def test_webhook_rule_fails_on_a_broken_policy(rendered_all, case):
    rendered = rendered_all["example"]
    policies = [o for o in rendered.component("cert-manager") if o["kind"] == "NetworkPolicy"]
    broken = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "broken", "namespace": "cert-manager"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [BROKEN_WEBHOOK_RULES[case]]},
    }
    assert webhook_exposure([*policies, broken], api_server_cidrs(rendered)) != []
