"""The monitoring stack's objects and the dashboards' and alert rules', built directly from the role's settings."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.observability import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import observability_manifests as obs

FILTERS = FilterModule().filters()
STACK = {
    "namespace": "monitoring",
    "chart_repo": "https://prometheus-community.github.io/helm-charts",
    "chart_version": "89.2.2",
    "chart_content": {},
    "image_registry": "",
    "prometheus_retention": "15d",
    "prometheus_retention_size": "45GB",
    "prometheus_resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    "prometheus_storage_size": "50Gi",
    "storage_class": "local-path",
    "alertmanager_enabled": True,
    "alertmanager_storage_size": "2Gi",
    "k3s_skip_control_plane_monitors": True,
    "grafana_hostname": "grafana.llm.example.com",
    "grafana_ingress": True,
    "grafana_admin_user": "admin",
    "grafana_admin_password": "  pw-from-vault\n",
    "grafana_admin_secret": "grafana-admin",
    "grafana_sidecar_role": "grafana-sidecar",
    "grafana_dashboard_label": "grafana_dashboard",
    "grafana_dashboard_label_value": "1",
    "otel_collector_enabled": False,
    "otel_chart_repo": "https://open-telemetry.github.io/opentelemetry-helm-charts",
    "otel_chart_version": "0.170.0",
    "otel_image_repository": "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s",
    "otel_command": "otelcol-k8s",
    "otel_traces_endpoint": "",
    "otel_traces_insecure": True,
    "network_policies": True,
    "ingress_namespace": "kube-system",
    "api_server_cidrs": ["10.42.0.0/16", "192.0.2.10/32"],
    "platform_namespace": "k3sllm",
    "values_extra": {},
    "otel_values_extra": {},
}


def stack(**overrides: object) -> dict[tuple[str, str], dict]:
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in FILTERS["observability_stack_objects"]({**STACK, **overrides})
    }


def values(name: str = "kube-prometheus-stack", **overrides: object) -> dict:
    return yaml.safe_load(stack(**overrides)[("HelmChart", name)]["spec"]["valuesContent"])


def test_stack_objects_in_apply_order():
    kinds = [o["kind"] for o in obs.stack_objects(STACK)]
    assert kinds == ["Namespace", "Secret", "Role", "HelmChart"] + ["NetworkPolicy"] * 6


def test_grafana_admin_secret_holds_the_trimmed_password():
    secret = stack()[("Secret", "grafana-admin")]
    assert secret["stringData"] == {"admin-user": "admin", "admin-password": "pw-from-vault"}
    assert values()["grafana"]["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }


def test_grafana_sidecar_reads_configmaps_of_its_namespace_only():
    role = stack()[("Role", "grafana-sidecar")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ]
    grafana = values()["grafana"]
    assert grafana["rbac"] == {"namespaced": True, "useExistingRole": "grafana-sidecar"}
    assert grafana["sidecar"]["dashboards"]["searchNamespace"] == ["monitoring"]
    assert grafana["sidecar"]["dashboards"]["labelValue"] == "1"


def test_grafana_containers_are_restricted_and_written_out_in_full():
    text = stack()[("HelmChart", "kube-prometheus-stack")]["spec"]["valuesContent"]
    assert "&id" not in text and "*id" not in text  # the shared security context is not an alias
    grafana = yaml.safe_load(text)["grafana"]
    for context in (grafana["containerSecurityContext"], grafana["sidecar"]["securityContext"]):
        assert context == obs.RESTRICTED_CONTAINER
    assert grafana["securityContext"]["runAsUser"] == 472


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        (
            True,
            {
                "enabled": True,
                "ingressClassName": "traefik",
                "hosts": ["grafana.llm.example.com"],
                "path": "/",
                "tls": [{"hosts": ["grafana.llm.example.com"]}],
            },
        ),
        (False, {"enabled": False}),
    ],
)
def test_grafana_ingress_on_or_off(enabled, expected):
    assert values(grafana_ingress=enabled)["grafana"]["ingress"] == expected


@pytest.mark.parametrize("skip", [True, False])
def test_k3s_embedded_components_are_not_monitored(skip):
    chart = values(k3s_skip_control_plane_monitors=skip)
    for component in ("kubeControllerManager", "kubeScheduler", "kubeProxy", "kubeEtcd"):
        assert (chart.get(component) == {"enabled": False}) is skip


def test_prometheus_keeps_every_selector_open_and_its_volume():
    spec = values()["prometheus"]["prometheusSpec"]
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert (spec["retention"], spec["retentionSize"]) == ("15d", "45GB")
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim == {
        "storageClassName": "local-path",
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "50Gi"}},
    }
    alertmanager = values(alertmanager_enabled=False)["alertmanager"]
    assert alertmanager["enabled"] is False
    assert alertmanager["alertmanagerSpec"]["storage"]["volumeClaimTemplate"]["spec"]["resources"] == {
        "requests": {"storage": "2Gi"}
    }


@pytest.mark.parametrize(
    ("mirror", "expected"),
    [("", None), ("registry.lan:5000", "registry.lan:5000"), ("registry.lan/", "registry.lan")],
)
def test_a_mirror_becomes_the_global_image_registry(mirror, expected):
    assert values(image_registry=mirror).get("global") == (
        None if expected is None else {"imageRegistry": expected}
    )


def test_values_extra_merge_deeply():
    chart = values(
        values_extra={
            "grafana": {"ingress": {"path": "/grafana"}, "sidecar": {"dashboards": {"enabled": False}}},
            "prometheus": {"prometheusSpec": {"retention": "30d"}},
            "kubeProxy": {"enabled": True},
        }
    )
    assert chart["grafana"]["ingress"]["path"] == "/grafana"
    assert chart["grafana"]["ingress"]["hosts"] == ["grafana.llm.example.com"]
    assert chart["grafana"]["sidecar"]["dashboards"]["enabled"] is False
    assert chart["grafana"]["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert chart["prometheus"]["prometheusSpec"]["retention"] == "30d"
    assert chart["prometheus"]["prometheusSpec"]["retentionSize"] == "45GB"
    assert chart["kubeProxy"] == {"enabled": True}


@pytest.mark.parametrize(
    ("archives", "expected"),
    [
        ({}, {"chart": "kube-prometheus-stack", "version": "89.2.2"}),
        ({"kube-prometheus-stack-89.2.2.tgz": "QUJD"}, {"chartContent": "QUJD"}),
        # An archive of another version is not this chart.
        (
            {"kube-prometheus-stack-1.0.0.tgz": "QUJD"},
            {"chart": "kube-prometheus-stack", "version": "89.2.2"},
        ),
    ],
)
def test_chart_from_repository_or_archive(archives, expected):
    spec = stack(chart_content=archives)[("HelmChart", "kube-prometheus-stack")]["spec"]
    assert {k: spec[k] for k in ("chart", "version", "chartContent") if k in spec} == expected


def test_collector_is_off_by_default():
    built = stack()
    assert ("HelmChart", "opentelemetry-collector") not in built
    assert ("NetworkPolicy", "allow-traces-to-collector") not in built


@pytest.mark.parametrize(
    ("endpoint", "insecure", "exporters"),
    [
        ("", True, {"debug": {}}),
        ("tempo.tracing:4317", True, {"otlp": {"endpoint": "tempo.tracing:4317", "tls": {"insecure": True}}}),
        (
            "tempo.tracing:4317",
            False,
            {"otlp": {"endpoint": "tempo.tracing:4317", "tls": {"insecure": False}}},
        ),
    ],
)
def test_collector_exports_traces_to_the_endpoint_or_logs_them(endpoint, insecure, exporters):
    otel = values(
        "opentelemetry-collector",
        otel_collector_enabled=True,
        otel_traces_endpoint=endpoint,
        otel_traces_insecure=insecure,
    )
    assert otel["config"]["exporters"] == exporters
    assert otel["config"]["service"]["pipelines"]["traces"]["exporters"] == list(exporters)
    assert otel["image"]["repository"] == STACK["otel_image_repository"]
    assert otel["securityContext"] == obs.RESTRICTED_CONTAINER


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        # The registry host (it holds a dot) is replaced by the mirror, the path kept.
        (
            STACK["otel_image_repository"],
            "mirror.lan:5000/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-k8s",
        ),
        # No host: the whole reference is the path.
        ("otel/opentelemetry-collector-k8s", "mirror.lan:5000/otel/opentelemetry-collector-k8s"),
    ],
)
def test_collector_image_comes_from_the_mirror(repository, expected):
    otel = values(
        "opentelemetry-collector",
        otel_collector_enabled=True,
        otel_image_repository=repository,
        image_registry="mirror.lan:5000/",
    )
    assert otel["image"]["repository"] == expected


def test_collector_values_extra_and_archive():
    built = stack(
        otel_collector_enabled=True,
        otel_values_extra={"resources": {"limits": {"memory": "1Gi"}}},
        chart_content={"opentelemetry-collector-0.170.0.tgz": "T1RFTA=="},
    )
    spec = built[("HelmChart", "opentelemetry-collector")]["spec"]
    assert spec["chartContent"] == "T1RFTA==" and "repo" not in spec
    otel = yaml.safe_load(spec["valuesContent"])
    assert otel["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    # The kube-prometheus-stack chart has no archive here: it comes from its repository.
    assert built[("HelmChart", "kube-prometheus-stack")]["spec"]["repo"] == STACK["chart_repo"]


def test_engines_may_send_traces_to_the_collector():
    policy = stack(otel_collector_enabled=True)[("NetworkPolicy", "allow-traces-to-collector")]
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "opentelemetry-collector"}
    }
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "k3sllm"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}},
        }
    ]
    assert [p["port"] for p in rule["ports"]] == [4317, 4318]


def test_network_policies():
    built = stack()
    webhook = built[("NetworkPolicy", "allow-operator-webhook")]["spec"]
    assert webhook["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "prometheus-operator"}}
    assert webhook["ingress"] == [
        {
            "from": [{"ipBlock": {"cidr": "10.42.0.0/16"}}, {"ipBlock": {"cidr": "192.0.2.10/32"}}],
            "ports": [{"port": 10250, "protocol": "TCP"}],
        }
    ]
    grafana = built[("NetworkPolicy", "allow-ingress-to-grafana")]["spec"]["ingress"]
    assert grafana[0]["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "traefik"}}
    assert grafana[0]["ports"] == [{"port": 3000, "protocol": "TCP"}]
    gossip = built[("NetworkPolicy", "allow-alertmanager-cluster")]["spec"]["ingress"][0]["ports"]
    assert gossip == [{"port": 9094, "protocol": "TCP"}, {"port": 9094, "protocol": "UDP"}]
    scrape = built[("NetworkPolicy", "allow-prometheus-scrape")]["spec"]
    assert scrape == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}],
    }
    assert not [k for k in stack(network_policies=False) if k[0] == "NetworkPolicy"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"grafana_ingress": "true"}, "observability_grafana_ingress is 'true'"),
        ({"values_extra": None}, "observability_values_extra must be a mapping"),
        ({"api_server_cidrs": []}, "k3sllm_api_server_cidrs is \\[\\]"),
        ({"api_server_cidrs": "10.42.0.0/16"}, "k3sllm_api_server_cidrs is '10.42.0.0/16'"),
    ],
)
def test_bad_stack_settings_fail_naming_the_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        stack(**override)


# Content: dashboards and alert rules.
RULES = """\
groups:
  - name: k3sllm-vllm
    rules:
      - alert: K3sllmVllmTtftP95High
        expr: histogram_quantile(0.95, sum by (le) (rate(x[5m]))) > 5
        annotations:
          summary: p95 time to first token above 5 s
          description: The p95 TTFT stayed above 5 seconds for 10 minutes.
          runbook: unchanged 5 s
      - alert: K3sllmOther
        expr: up > 5
        annotations:
          summary: above 5 s
"""
CONTENT = {
    "namespace": "monitoring",
    "grafana_dashboard_label": "grafana_dashboard",
    "grafana_dashboard_label_value": 1,
    "grafana_dashboard_folder": "k3sllm",
    "ttft_p95_seconds": 5,
    "dashboards": {"GPU Overview.json": '{"title": "GPU"}\n', "vllm.json": "{}"},
    "alerts": {"vllm.yml": RULES, "empty.yml": ""},
}


def content(**overrides: object) -> dict[tuple[str, str], dict]:
    objects = FILTERS["observability_content_objects"]({**CONTENT, **overrides})
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_one_configmap_per_dashboard_then_one_rule_per_file():
    names = [o["metadata"]["name"] for o in obs.content_objects(CONTENT)]
    assert names == ["k3sllm-dashboard-gpu-overview", "k3sllm-dashboard-vllm", "k3sllm-vllm", "k3sllm-empty"]


def test_dashboard_configmap_is_labelled_for_the_sidecar_and_keeps_the_text():
    config_map = content()[("ConfigMap", "k3sllm-dashboard-gpu-overview")]
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}  # a label value is text
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "k3sllm"}
    assert config_map["data"] == {"GPU Overview.json": '{"title": "GPU"}\n'}


def ttft_rule(seconds: object) -> dict:
    groups = content(ttft_p95_seconds=seconds)[("PrometheusRule", "k3sllm-vllm")]["spec"]["groups"]
    return groups[0]["rules"][0]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5"), (2.0, "2"), ("3", "3"), (2.5, "2.5"), ("0.75", "0.75"), (10, "10")],
)
def test_ttft_threshold_rewrites_expression_and_wording(seconds, text):
    rule = ttft_rule(seconds)
    assert rule["expr"] == f"histogram_quantile(0.95, sum by (le) (rate(x[5m]))) > {text}"
    assert rule["annotations"]["summary"] == f"p95 time to first token above {text} s"
    assert rule["annotations"]["description"] == f"The p95 TTFT stayed above {text} seconds for 10 minutes."
    assert rule["annotations"]["runbook"] == "unchanged 5 s"  # only "above <n> s" is the threshold


def test_other_alerts_keep_their_numbers_and_the_input_is_not_changed():
    groups = content(ttft_p95_seconds=7)[("PrometheusRule", "k3sllm-vllm")]["spec"]["groups"]
    assert groups[0]["rules"][1] == {
        "alert": "K3sllmOther",
        "expr": "up > 5",
        "annotations": {"summary": "above 5 s"},
    }
    original = yaml.safe_load(RULES)["groups"]
    assert obs.set_ttft_threshold(original, "9")[0]["rules"][0]["expr"].endswith("> 9")
    assert original == yaml.safe_load(RULES)["groups"]


def test_an_empty_rule_file_gives_an_empty_rule():
    assert content()[("PrometheusRule", "k3sllm-empty")]["spec"] == {"groups": []}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ttft_p95_seconds": "fast"}, "observability_vllm_ttft_p95_seconds is 'fast'"),
        ({"ttft_p95_seconds": 0}, "observability_vllm_ttft_p95_seconds is 0: set a positive number"),
        ({"ttft_p95_seconds": "nan"}, "observability_vllm_ttft_p95_seconds is 'nan': set a positive number"),
        (
            {"ttft_p95_seconds": float("inf")},
            "observability_vllm_ttft_p95_seconds is inf: set a positive number",
        ),
        ({"alerts": {"bad.yml": "groups: [\n"}}, "alert rule file bad.yml .* is not YAML"),
        ({"alerts": {"list.yml": "- a\n"}}, "alert rule file list.yml .* must hold a mapping"),
        ({"dashboards": ["a.json"]}, "observability_dashboards_dir: expected a mapping"),
    ],
)
def test_bad_content_settings_fail_naming_the_variable(override, message):
    with pytest.raises(AnsibleFilterError, match=message):
        content(**override)
