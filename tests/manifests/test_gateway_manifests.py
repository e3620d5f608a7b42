"""Policies for the gateway's manifests (roles/litellm): LiteLLM's config against the catalog and the
switcher, locked-down pods, the network walls, the Ingress, and secrets that never leave their Secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env

from ansible_collections.k3sllm.platform.plugins.module_utils import litellm_config as gw

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
INVENTORY_DIRS = {
    "example": REPO / "inventories" / "example",
    "acme-multinode": HERE / "inventories" / "acme-multinode",
    "airgap": HERE / "inventories" / "airgap",
}
LITELLM = {"app.kubernetes.io/name": "litellm"}
POSTGRES = {"app.kubernetes.io/name": "litellm-postgres"}
# Routes that must never be reachable from outside the cluster.
INTERNAL_PATHS = ("/vllm", "/metrics", "/ui", "/config", "/model/new", "/")


def settings(rendered) -> dict:
    merged: dict = {}
    for path in sorted((INVENTORY_DIRS[rendered.inventory] / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def gateway(rendered) -> list[dict]:
    return rendered.component("litellm") + rendered.component("litellm-postgres")


def litellm_config(rendered) -> dict:
    config_map = one(rendered.component("litellm"), "ConfigMap", "litellm-config")
    return yaml.safe_load(config_map["data"]["config.yaml"])


def switcher_config(rendered) -> dict:
    config_map = one(rendered.component("switcher"), "ConfigMap", "switcher-config")
    return yaml.safe_load(config_map["data"]["config.yaml"])


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def policy_for(rendered, labels: dict) -> dict:
    """The one ingress policy of the pods with these labels (their egress allowances are separate)."""
    policies = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels", {}).items() >= labels.items()
        and p["spec"]["podSelector"].get("matchLabels")
        and "Ingress" in p["spec"]["policyTypes"]
    ]
    assert len(policies) == 1, f"expected one ingress NetworkPolicy for {labels}, found {len(policies)}"
    return policies[0]


def test_the_gateway_is_rendered(rendered):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in gateway(rendered))
    assert kinds == [
        ("ConfigMap", "litellm-config"),
        ("Deployment", "litellm"),
        ("Deployment", "litellm-postgres"),
        ("Ingress", "litellm"),
        ("NetworkPolicy", "litellm-ingress"),
        ("NetworkPolicy", "litellm-postgres-egress"),
        ("NetworkPolicy", "litellm-postgres-ingress"),
        ("PersistentVolumeClaim", "litellm-postgres"),
        ("Secret", "litellm-master-key"),
        ("Secret", "litellm-postgres"),
        ("Service", "litellm"),
        ("Service", "litellm-postgres"),
        ("ServiceMonitor", "litellm"),
    ]


def test_config_routes_every_model_and_alias_to_the_switcher(rendered):
    service = one(rendered.component("switcher"), "Service", "switcher")
    namespace, port = service["metadata"]["namespace"], service["spec"]["ports"][0]["port"]
    expected = {}
    for model in rendered.catalog:
        for name in [model["name"], *model.get("aliases", [])]:
            expected[name] = f"hosted_vllm/{model['name']}"
    entries = litellm_config(rendered)["model_list"]
    assert {e["model_name"]: e["litellm_params"]["model"] for e in entries} == expected
    assert len(entries) == len(expected)
    assert {e["litellm_params"]["api_base"] for e in entries} == {
        f"http://switcher.{namespace}.svc:{port}/v1"
    }
    # The switcher knows every upstream name the gateway sends.
    assert {m["name"] for m in switcher_config(rendered)["models"]} == {
        v.split("/", 1)[1] for v in expected.values()
    }


def test_config_wakes_nothing_and_waits_out_a_model_switch(rendered):
    config = litellm_config(rendered)
    assert config["general_settings"]["background_health_checks"] is False
    queue = switcher_config(rendered)["policy"]["queue_timeout_seconds"]
    timeouts = gw.config_timeouts(config)
    assert timeouts["timeout"] > queue and timeouts["stream_timeout"] > queue
    assert config["litellm_settings"]["request_timeout"] >= timeouts["timeout"]
    assert config["router_settings"]["num_retries"] <= 2
    assert config["router_settings"]["disable_cooldowns"] is True
    assert config["litellm_settings"]["use_chat_completions_url_for_anthropic_messages"] is True
    assert "prometheus" in config["litellm_settings"]["callbacks"]


def test_config_holds_no_secret_only_references(rendered):
    config = litellm_config(rendered)
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    env = {
        e["name"]: e for e in container(one(rendered.component("litellm"), "Deployment", "litellm"))["env"]
    }
    assert env["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "litellm-master-key",
        "key": "master-key",
    }
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "litellm-postgres",
        "key": "database-url",
    }
    pg_env = {
        e["name"]: e
        for e in container(one(rendered.component("litellm-postgres"), "Deployment", "litellm-postgres"))[
            "env"
        ]
    }
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "litellm-postgres",
        "key": "password",
    }


def test_tool_call_parsers_reach_the_engines(rendered):
    engines = {
        d["metadata"]["labels"]["k3sllm.io/model"]: container(d)["args"]
        for d in rendered.component("vllm")
        if d["kind"] == "Deployment"
    }
    parsers = {m["name"]: m.get("tool_call_parser") for m in rendered.catalog}
    for name, parser in parsers.items():
        if parser:
            assert "--enable-auto-tool-choice" in engines[name]
            assert f"--tool-call-parser={parser}" in engines[name]
        else:
            assert not any(
                a.startswith(("--tool-call-parser", "--enable-auto-tool-choice")) for a in engines[name]
            )
    tools = {
        e["model_name"]: e["model_info"]["supports_function_calling"]
        for e in litellm_config(rendered)["model_list"]
    }
    assert all(tools[m["name"]] == bool(m.get("tool_call_parser")) for m in rendered.catalog)


@pytest.mark.parametrize("name", ["litellm", "litellm-postgres"])
def test_gateway_pods_run_locked_down(rendered, name):
    deployment = one(gateway(rendered), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    main = container(deployment)
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # Every writable folder is a volume: emptyDirs for scratch, the claim for the database.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"] for m in main["volumeMounts"] if not m.get("readOnly")}
    for mount in main["volumeMounts"]:
        assert {"emptyDir", "persistentVolumeClaim", "configMap"} & set(volumes[mount["name"]])
    env = {e["name"]: e.get("value") for e in main["env"]}
    if name == "litellm":
        assert "/tmp" in writable
        for variable in ("LITELLM_MIGRATION_DIR", "PROMETHEUS_MULTIPROC_DIR"):
            assert any(env[variable].startswith(path + "/") for path in writable), variable
    else:
        assert {"/var/run/postgresql", "/tmp", "/var/lib/postgresql"} <= writable
        assert env["PGDATA"].startswith("/var/lib/postgresql/")
        (data,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        claim = one(
            rendered.component("litellm-postgres"),
            "PersistentVolumeClaim",
            data["persistentVolumeClaim"]["claimName"],
        )
        assert claim["spec"]["storageClassName"] == "local-path"
        assert deployment["spec"]["strategy"]["type"] == "Recreate" and deployment["spec"]["replicas"] == 1
        probe = main["readinessProbe"]["exec"]["command"]
        assert probe[0] == "pg_isready"


def test_probes_use_litellms_own_health_routes(rendered):
    main = container(one(rendered.component("litellm"), "Deployment", "litellm"))
    assert main["livenessProbe"]["httpGet"]["path"] == "/health/liveliness"
    assert main["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert main["startupProbe"]["httpGet"]["path"] == "/health/liveliness"


def test_workers_follow_the_node_and_resources_the_workers(rendered):
    cores = settings(rendered).get("litellm_node_cpu_cores", 0)
    workers = gw.gateway_workers(cores or 1)
    deployment = one(rendered.component("litellm"), "Deployment", "litellm")
    main = container(deployment)
    assert f"--num_workers={workers}" in main["args"]
    # uvicorn's 5 s default killed workers still importing their Prisma client, for ever.
    patience = [a for a in main["args"] if a.startswith("--timeout_worker_healthcheck=")]
    assert patience and int(patience[0].split("=")[1]) >= 60
    assert main["resources"] == gw.gateway_resources(workers)
    replicas = settings(rendered).get("litellm_replicas", 1)
    assert deployment["spec"]["replicas"] == replicas
    postgres = container(one(rendered.component("litellm-postgres"), "Deployment", "litellm-postgres"))
    pool = litellm_config(rendered)["general_settings"]["database_connection_pool_limit"]
    max_connections = int(postgres["args"][postgres["args"].index("-c") + 1].split("=")[1])
    assert max_connections > workers * replicas * pool


def test_only_litellm_reaches_postgres(rendered):
    policy = policy_for(rendered, POSTGRES)
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": LITELLM}}]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    pod_labels = one(rendered.component("litellm"), "Deployment", "litellm")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert pod_labels.items() >= LITELLM.items()


def test_only_traefik_and_prometheus_reach_litellm(rendered):
    policy = policy_for(rendered, LITELLM)
    (rule,) = policy["spec"]["ingress"]
    sources = {
        (
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            tuple(peer["podSelector"]["matchLabels"].items()),
        )
        for peer in rule["from"]
    }
    assert sources == {
        ("kube-system", (("app.kubernetes.io/name", "traefik"),)),
        ("monitoring", (("app.kubernetes.io/name", "prometheus"),)),
    }
    assert rule["ports"] == [{"port": 4000, "protocol": "TCP"}]


def test_the_switcher_admits_litellm(rendered):
    policy = policy_for(rendered, {"app.kubernetes.io/name": "switcher"})
    pod_sources = [
        peer["podSelector"]["matchLabels"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if "podSelector" in peer and "namespaceSelector" not in peer
    ]
    assert LITELLM in pod_sources


def test_the_ingress_serves_the_gateway_over_tls_and_nothing_internal(rendered):
    host = settings(rendered)["k3sllm_hostname"]
    ingress = one(rendered.component("litellm"), "Ingress", "litellm")
    assert (
        ingress["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    )
    # The certificate comes from Traefik's default TLSStore by SNI: a host, no secretName.
    assert ingress["spec"]["tls"] == [{"hosts": [host]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert {"/v1", "/key", "/team"} <= paths
    assert not paths & set(INTERNAL_PATHS)
    for path in rule["http"]["paths"]:
        assert path["pathType"] == "Prefix"
        assert path["backend"]["service"] == {"name": "litellm", "port": {"name": "http"}}
    # The tls role issues (or is given) the certificate for that very host.
    certificates = [c for c in rendered.of_kind("Certificate") if host in c["spec"].get("dnsNames", [])]
    byo = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == "k3sllm-tls-byo"]
    assert certificates or byo


def test_prometheus_scrapes_the_gateway_without_a_key(rendered):
    monitor = one(rendered.component("litellm"), "ServiceMonitor", "litellm")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"].rstrip("/") == "/metrics"
    assert litellm_config(rendered)["litellm_settings"]["require_auth_for_metrics_endpoint"] is False


def test_images_are_pinned_to_the_roles_versions(rendered):
    defaults = yaml.safe_load((REPO / "roles" / "litellm" / "defaults" / "main.yml").read_text())
    image = container(one(rendered.component("litellm"), "Deployment", "litellm"))["image"]
    assert image == f"{defaults['litellm_image_repository']}:v{defaults['litellm_version']}"
    assert defaults["litellm_version"] != "1.107.0"
    postgres = container(one(rendered.component("litellm-postgres"), "Deployment", "litellm-postgres"))[
        "image"
    ]
    assert postgres == defaults["litellm_postgres_image"]


MASTER_KEY = "sk-known-master-key-0123456789abcdef"
DB_PASSWORD = "known/db@password:0123456789"


def render_example(base: Path, *args: str) -> tuple[int, str]:
    """playbooks/render.yml on the example inventory into ``base``/rendered (artifacts in ``base``/artifacts),
    with ``args`` added: the exit code and the output."""
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(INVENTORY_DIRS["example"]),
            str(REPO / "playbooks" / "render.yml"),
            "-e",
            f"k3sllm_render_dir={base / 'rendered'} k3sllm_artifacts_dir={base / 'artifacts'}",
            *args,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def render_with_known_secrets(tmp_path_factory) -> tuple[Path, str]:
    """playbooks/render.yml with the secrets set (as from vault), verbose: the folder and the output."""
    base = tmp_path_factory.mktemp("gateway-secrets")
    code, output = render_example(
        base, "-v", "-e", f"litellm_master_key={MASTER_KEY}", "-e", f"litellm_postgres_password={DB_PASSWORD}"
    )
    assert code == 0, output[-4000:]
    return base, output


@pytest.mark.timeout(900)
def test_known_secrets_appear_in_no_rendered_file_and_no_output(render_with_known_secrets):
    base, output = render_with_known_secrets
    files = [p for p in base.rglob("*") if p.is_file()]
    assert any(p.parent.name == "litellm" for p in files), "the gateway was not rendered"
    forms = [MASTER_KEY, DB_PASSWORD, quote(DB_PASSWORD, safe="")]
    for path in files:
        text = path.read_text(errors="replace")
        for secret in forms:
            assert secret not in text, f"{path.relative_to(base)} holds a secret"
    for secret in forms:
        assert secret not in output, "a secret reached ansible-playbook -v output"
    # Set from vault, they are not copied to the controller's secrets folder either.
    assert not (base / "artifacts" / "secrets" / "litellm-master-key").exists()
    assert "litellm" in output


@pytest.mark.timeout(900)
def test_a_bad_master_key_fails_before_the_gateway_is_rendered_and_is_not_printed(tmp_path):
    bad = "not-an-sk-key-0123456789"
    code, output = render_example(tmp_path, "-e", f"litellm_master_key={bad}")
    assert code != 0
    assert 'litellm_master_key must start with "sk-"' in " ".join(output.split())
    assert bad not in output
    assert not (tmp_path / "rendered" / "litellm").exists()
    assert not (tmp_path / "rendered" / "litellm-postgres").exists()
