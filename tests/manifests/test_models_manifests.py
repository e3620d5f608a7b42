"""Policies for the serving manifests: engines, switcher, and the wall between them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def engines(rendered):
    return [obj for obj in rendered.component("vllm") if obj["kind"] == "Deployment"]


def catalog(rendered) -> list[dict]:
    """The switcher's rendered config is the catalog as the cluster will see it."""
    (config_map,) = [o for o in rendered.component("switcher") if o["metadata"]["name"] == "switcher-config"]
    return yaml.safe_load(config_map["data"]["config.yaml"])


def test_one_engine_per_catalog_model(rendered):
    config = catalog(rendered)
    names = sorted(m["name"] for m in config["models"])
    assert sorted(d["metadata"]["labels"]["k3sllm.io/model"] for d in engines(rendered)) == names
    services = [o for o in rendered.component("vllm") if o["kind"] == "Service"]
    assert sorted(s["metadata"]["name"] for s in services) == [f"vllm-{n}" for n in names]


def test_engines_run_with_sleep_mode_and_dev_routes(rendered):
    for deployment in engines(rendered):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "--enable-sleep-mode" in container["args"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VLLM_SERVER_DEV_MODE"] == "1"
        assert env["HF_HUB_OFFLINE"] == "1"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert deployment["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
        assert container["startupProbe"]["httpGet"]["path"] == "/health"


def test_engine_args_follow_the_catalog(rendered):
    config = {m["name"]: m for m in rendered.catalog}
    for deployment in engines(rendered):
        model = deployment["metadata"]["labels"]["k3sllm.io/model"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--served-model-name={config[model].get('served_name', model)}" in args
        assert f"--gpu-memory-utilization={config[model]['gpu_memory_utilization']}" in args


def test_served_name_flows_from_the_catalog_to_the_engine_and_the_switcher(rendered):
    """The switcher rewrites a request's model to the name the engine serves: both come from one field."""
    inventory = {m["name"]: m for m in rendered.catalog}
    switcher = {m["name"]: m for m in catalog(rendered)["models"]}
    for deployment in engines(rendered):
        model = deployment["metadata"]["labels"]["k3sllm.io/model"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        (served,) = [a.split("=", 1)[1] for a in args if a.startswith("--served-model-name=")]
        assert switcher[model].get("served_name", model) == served
        if "served_name" in inventory[model]:
            assert served == inventory[model]["served_name"] != model


def test_weights_are_mounted_read_only_from_the_pinned_revision(rendered):
    claims = {
        o["metadata"]["name"]: o for o in rendered.component("vllm") if o["kind"] == "PersistentVolumeClaim"
    }
    volumes = {
        o["metadata"]["name"]: o for o in rendered.component("vllm") if o["kind"] == "PersistentVolume"
    }
    for deployment in engines(rendered):
        model = deployment["metadata"]["labels"]["k3sllm.io/model"]
        spec = deployment["spec"]["template"]["spec"]
        (weights,) = [v for v in spec["volumes"] if v["name"] == "weights"]
        # A local PersistentVolume, not an inline hostPath (Pod Security "restricted" forbids those).
        assert weights["persistentVolumeClaim"]["readOnly"] is True
        claim = claims[weights["persistentVolumeClaim"]["claimName"]]
        volume = volumes[claim["spec"]["volumeName"]]
        assert volume["spec"]["claimRef"] == {
            "namespace": claim["metadata"]["namespace"],
            "name": claim["metadata"]["name"],
        }
        model_folder, revision_folder = volume["spec"]["local"]["path"].rsplit("/", 2)[-2:]
        assert model_folder == model
        assert len(revision_folder) == 40, volume["spec"]["local"]["path"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "weights"]
        assert mount["readOnly"] is True


def test_engines_wait_for_the_switchers_boot_grant(rendered):
    (switcher_service,) = [
        o
        for o in rendered.component("switcher")
        if o["kind"] == "Service" and o["metadata"]["name"] == "switcher"
    ]
    port = switcher_service["spec"]["ports"][0]["port"]
    for deployment in engines(rendered):
        model = deployment["metadata"]["labels"]["k3sllm.io/model"]
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e["value"] for e in init["env"]}
        namespace = deployment["metadata"]["namespace"]
        assert env["BOOT_GRANT_URL"] == f"http://switcher.{namespace}.svc:{port}/boot/{model}"


def test_only_the_switcher_and_prometheus_reach_the_engines(rendered):
    policies = [o for o in rendered.objects if o["kind"] == "NetworkPolicy"]
    (engine_policy,) = [
        p
        for p in policies
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "vllm"
        and "Ingress" in p["spec"]["policyTypes"]
    ]
    sources = [peer for rule in engine_policy["spec"]["ingress"] for peer in rule["from"]]
    # In the engines' namespace: the switcher only.
    pod_sources = [p["podSelector"]["matchLabels"] for p in sources if "namespaceSelector" not in p]
    assert pod_sources == [{"app.kubernetes.io/name": "switcher"}]
    # From elsewhere: Prometheus's own pods, never a whole namespace, on the engine port only.
    port = engines(rendered)[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    for rule in engine_policy["spec"]["ingress"]:
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    # The namespace baseline denies everything else.
    assert any(p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"] for p in policies)


def test_no_ingress_points_at_an_engine(rendered):
    engine_services = {o["metadata"]["name"] for o in rendered.component("vllm") if o["kind"] == "Service"}
    for obj in rendered.objects:
        if obj["kind"] == "Ingress":
            for rule in obj["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    assert path["backend"]["service"]["name"] not in engine_services
        if obj["kind"] == "IngressRoute":
            for route in obj["spec"]["routes"]:
                assert not {s["name"] for s in route["services"]} & engine_services


def test_switcher_runs_on_the_engine_image_without_a_gpu(rendered):
    (switcher,) = [o for o in rendered.component("switcher") if o["kind"] == "Deployment"]
    (engine, *_) = engines(rendered)
    container = switcher["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == engine["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in container["env"]
    assert switcher["spec"]["replicas"] == 1


def test_switcher_config_points_at_each_engine_service(rendered):
    services = {
        (o["metadata"]["name"], o["metadata"]["namespace"]): o["spec"]["ports"][0]["port"]
        for o in rendered.component("vllm")
        if o["kind"] == "Service"
    }
    for model in catalog(rendered)["models"]:
        host, port = model["base_url"].removeprefix("http://").split(":")
        name, namespace, svc = host.rsplit(".", 2)
        assert svc == "svc"
        assert services[(name, namespace)] == int(port)


def test_switcher_code_is_shipped_whole(rendered):
    (code,) = [o for o in rendered.component("switcher") if o["metadata"]["name"] == "switcher-code"]
    assert "__main__.py" in code["data"]
    # Every module, byte for byte; vram.py is read through its link to the collection's module_utils
    # (the one VRAM rule the capacity plan also uses).
    package = Path(__file__).resolve().parents[2] / "switcher"
    assert code["data"] == {p.name: p.read_text() for p in sorted(package.glob("*.py"))}
    assert "def vram_fits" in code["data"]["vram.py"]


def test_switcher_config_is_accepted_by_the_switcher(rendered):
    """The role's rendered config passes the switcher's own validation (switcher/config.py)."""
    from switcher.config import parse_config

    config = parse_config(catalog(rendered), source=rendered.inventory)
    assert [m.name for m in config.models] == [m["name"] for m in catalog(rendered)["models"]]
    assert config.admin_token_file is not None
