"""The switcher's objects, built directly (no render playbook): config, hardening, network walls."""

from __future__ import annotations

import copy

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.switcher import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import switcher_manifests as sw
from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import (
    ENGINE_SELECTOR,
    normalise_catalog,
)

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
    "policy": {"min_residency_seconds": 5, "queue_timeout_seconds": 300},
    "limits": {"max_body_bytes": 8388608},
    "sleep_level": 1,
    "sleeping_residual_vram_gib": 1.0,
    "gpu_total_vram_gib": 80.0,
}
CODE = {"__main__.py": "print('switcher')\n", "config.py": "X = 1\n"}
TOKEN = "t0ken-value"


def catalog() -> list[dict]:
    models = [
        {
            "name": "qwen",
            "repo": "org/qwen",
            "revision": SHA,
            "gpu_memory_utilization": 0.45,
            "max_model_len": 4096,
            "awake_by_default": True,
            "priority": 10,
            "aliases": ["claude-sonnet-4-5"],
        },
        {
            "name": "llama",
            "repo": "org/llama",
            "revision": SHA,
            "gpu_memory_utilization": 0.4,
            "max_model_len": 4096,
            "idle_ttl_seconds": 1800,
        },
    ]
    return normalise_catalog(
        models,
        namespace="k3sllm",
        engine_port=8000,
        switcher_service="switcher",
        switcher_port=8080,
        weights_dir="/w",
    )


def objects(**overrides: object) -> dict[tuple[str, str], dict]:
    built = sw.switcher_manifests({**SETTINGS, **overrides}, catalog(), CODE, TOKEN)
    return {(o["kind"], o["metadata"]["name"]): o for o in built}


def config_of(built: dict) -> dict:
    return yaml.safe_load(built[("ConfigMap", "switcher-config")]["data"]["config.yaml"])


def pod(built: dict) -> dict:
    return built[("Deployment", "switcher")]["spec"]["template"]["spec"]


def test_config_is_accepted_by_the_switcher_and_lists_every_model():
    from switcher.config import parse_config

    config = parse_config(config_of(objects()))
    assert [m.name for m in config.models] == ["qwen", "llama"]
    assert config.models[0].base_url == "http://vllm-qwen.k3sllm.svc:8000"
    assert config.models[0].aliases == ["claude-sonnet-4-5"]
    assert config.models[1].idle_ttl_seconds == 1800 and config.models[0].idle_ttl_seconds is None
    assert config.policy.gpu_total_vram_gib == 80.0 and config.policy.queue_timeout_seconds == 300
    assert config.limits.max_body_bytes == 8388608
    assert config.listen.port == 8080
    assert config.metrics_listen is not None and config.metrics_listen.port == 9090
    assert str(config.admin_token_file) == "/var/run/secrets/k3sllm-switcher/admin-token"


def test_without_the_gpu_size_no_vram_share_is_planned():
    config = config_of(objects(gpu_total_vram_gib=0))
    assert "gpu_total_vram_gib" not in config["policy"]
    assert all("gpu_memory_utilization" not in m for m in config["models"])
    assert [m["gpu_memory_utilization"] for m in config_of(objects())["models"]] == [0.45, 0.4]


def test_the_policy_carries_the_platform_sleep_settings_without_changing_the_input():
    settings = copy.deepcopy(SETTINGS)
    built = sw.switcher_manifests(
        {**settings, "sleep_level": 2, "sleeping_residual_vram_gib": 0.5}, catalog(), CODE, TOKEN
    )
    (config_map,) = [o for o in built if o["metadata"]["name"] == "switcher-config"]
    policy = yaml.safe_load(config_map["data"]["config.yaml"])["policy"]
    assert policy["sleep_level"] == 2 and policy["sleeping_residual_vram_gib"] == 0.5
    assert settings == SETTINGS


def test_the_pod_runs_non_root_read_only_without_privileges_or_api_token():
    spec = pod(objects(run_as_user=1234))
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1234,
        "runAsGroup": 1234,
        "fsGroup": 1234,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    # The only writable folder is a small emptyDir, and HOME points into it.
    assert [(m["mountPath"], list(volumes[m["name"]])) for m in writable] == [("/tmp", ["name", "emptyDir"])]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOME"] == "/tmp" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    # The token is readable by the pod's group only.
    assert volumes["admin-token"]["secret"]["defaultMode"] == 0o440


def test_the_pod_rolls_when_the_code_or_the_config_changes():
    def rollout(code: dict, **overrides: object) -> str:
        built = sw.switcher_manifests({**SETTINGS, **overrides}, catalog(), code, TOKEN)
        (deployment,) = [o for o in built if o["kind"] == "Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"]["k3sllm.io/config-hash"]

    base = rollout(CODE)
    assert rollout(dict(CODE)) == base
    assert rollout({**CODE, "config.py": "X = 2\n"}) != base
    assert rollout(CODE, policy={"min_residency_seconds": 6}) != base


def test_the_code_and_token_are_shipped_as_given():
    built = objects()
    assert built[("ConfigMap", "switcher-code")]["data"] == CODE
    assert built[("Secret", "switcher-admin-token")]["stringData"] == {"admin-token": TOKEN}
    service = built[("Service", "switcher")]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics"},
    ]
    assert service["spec"]["selector"] == sw.SWITCHER_LABELS
    container = pod(built)["containers"][0]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080},
        {"name": "metrics", "containerPort": 9090},
    ]
    # The switcher answers health and metrics on the metrics port only.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    monitor = built[("ServiceMonitor", "switcher")]["spec"]
    assert monitor["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]


def test_the_gateway_and_the_engines_reach_the_request_port_prometheus_pods_the_metrics_port():
    policy = objects()[("NetworkPolicy", "switcher-ingress")]["spec"]
    assert policy["podSelector"] == {"matchLabels": sw.SWITCHER_LABELS}
    assert policy["policyTypes"] == ["Ingress"]
    requests, metrics = policy["ingress"]
    assert requests == {
        "from": [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "litellm"}}},
            {"podSelector": {"matchLabels": ENGINE_SELECTOR}},
        ],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }
    # Prometheus's own pods, not its whole namespace, and not the request port.
    assert metrics == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
        "ports": [{"port": 9090, "protocol": "TCP"}],
    }


def test_egress_the_switcher_calls_engines_and_its_clients_call_it():
    built = objects()
    to_engines = built[("NetworkPolicy", "switcher-egress")]["spec"]
    assert to_engines["podSelector"] == {"matchLabels": sw.SWITCHER_LABELS}
    assert to_engines["policyTypes"] == ["Egress"]
    assert to_engines["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": ENGINE_SELECTOR}}],
            "ports": [{"port": 8000, "protocol": "TCP"}],
        }
    ]
    for name, clients in (
        ("switcher-gateway-egress", {"app.kubernetes.io/name": "litellm"}),
        ("switcher-boot-egress", ENGINE_SELECTOR),
    ):
        spec = built[("NetworkPolicy", name)]["spec"]
        assert spec["podSelector"] == {"matchLabels": clients}, name
        assert spec["policyTypes"] == ["Egress"]
        assert spec["egress"] == [
            {
                "to": [{"podSelector": {"matchLabels": sw.SWITCHER_LABELS}}],
                "ports": [{"port": 8080, "protocol": "TCP"}],
            }
        ]


def test_a_custom_client_selector_is_used_on_both_sides():
    built = objects(client_selector={"app": "my-gateway"})
    peers = built[("NetworkPolicy", "switcher-ingress")]["spec"]["ingress"][0]["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {"app": "my-gateway"}}}
    assert built[("NetworkPolicy", "switcher-gateway-egress")]["spec"]["podSelector"] == {
        "matchLabels": {"app": "my-gateway"}
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"run_as_user": 0}, "model_switcher_run_as_user must be a non-root user id"),
        ({"run_as_user": True}, "model_switcher_run_as_user must be a non-root user id"),
        ({"run_as_user": "65534"}, "model_switcher_run_as_user must be a non-root user id"),
        ({"client_selector": {}}, "settings missing: client_selector"),
        ({"prometheus_selector": {}}, "settings missing: prometheus_selector"),
        ({"image": ""}, "settings missing: image"),
        ({"metrics_port": 8080}, "model_switcher_metrics_port must differ from k3sllm_switcher_port"),
    ],
)
def test_bad_settings_fail_naming_the_setting(override, message):
    with pytest.raises(sw.SwitcherManifestError, match=message):
        sw.switcher_manifests({**SETTINGS, **override}, catalog(), CODE, TOKEN)


def test_the_filter_reports_a_missing_package_as_an_ansible_error():
    switcher_manifests = FilterModule().filters()["switcher_manifests"]
    with pytest.raises(AnsibleFilterError, match=r"no __main__\.py"):
        switcher_manifests(SETTINGS, catalog(), {"config.py": ""}, TOKEN)
    assert len(switcher_manifests(SETTINGS, catalog(), CODE, TOKEN)) == 10
