"""The apply path of roles/k8s_apply, end to end through playbooks/models.yml, against a
Kubernetes API stand-in: create, idempotent re-run, honest check mode, prune, secrets unlogged."""

from __future__ import annotations

import base64
import shutil

import pytest
from k3sllm_testlib import changed_count

from standins.kube_apiserver import KubeApiServer

pytestmark = pytest.mark.slow

MODEL = {
    "repo": "org/tiny",
    "revision": "a" * 40,
    "gpu_memory_utilization": 0.4,
    "max_model_len": 2048,
}


def catalog(*names: str) -> list[dict]:
    return [{**MODEL, "name": name} for name in names]


@pytest.fixture
def api():
    # As after playbooks/platform.yml: the Prometheus Operator's CRDs exist (engines bring ServiceMonitors).
    with KubeApiServer(charts=("kube-prometheus-stack",)) as server:
        yield server


@pytest.fixture
def cluster_inventory(local_inventory, api, tmp_path):
    """An inventory whose fetched kubeconfig points at the stand-in, as after playbooks/k3s.yml."""
    source = tmp_path / "switcher-src"
    source.mkdir()
    (source / "__main__.py").write_text("print('switcher')\n")

    def _make(models: list[dict], **extra):
        inventory = local_inventory(
            {
                "k3sllm_hostname": "llm.test",
                "k3sllm_models": models,
                "model_switcher_source_dir": str(source),
                "model_switcher_admin_token": "not-a-real-token-0123456789",
                **extra,
            }
        )
        (inventory / "artifacts").mkdir(exist_ok=True)
        (inventory / "artifacts" / "kubeconfig").write_text(api.kubeconfig())
        return inventory

    return _make


def run_models(run_playbook, inventory, *args, tags: str = "vllm,model_switcher"):
    # The engines and the switcher, run alone by tag as users do; the weights play is tested in tests/models.
    result = run_playbook("playbooks/models.yml", inventory, "--tags", tags, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


# Several playbook runs, each bounded by run_playbook's limit; the suite's default 300 s is for one.
@pytest.mark.timeout(900)
def test_apply_lifecycle(api, cluster_inventory, run_playbook):
    """One cluster through its life: create, re-run, check mode, model removed (each run ~20 s)."""
    inventory = cluster_inventory(catalog("alpha", "beta"))

    # 1. First run creates everything, labelled for pruning.
    first = run_models(run_playbook, inventory)
    assert changed_count(first) > 0
    assert api.store.names("Deployment") == ["switcher", "vllm-alpha", "vllm-beta"]
    assert "k3sllm" in api.store.names("Namespace")
    deployment = api.store.get("Deployment", "vllm-alpha", "k3sllm")
    assert deployment["metadata"]["labels"]["k3sllm.io/component"] == "vllm"
    # The admin token reached the cluster, and never the log.
    secret = api.store.get("Secret", "switcher-admin-token", "k3sllm")
    assert base64.b64decode(secret["data"]["admin-token"]).decode() == "not-a-real-token-0123456789"
    assert "not-a-real-token-0123456789" not in first

    # 2. A second run with the same inventory changes and writes nothing.
    writes = list(api.store.writes)
    second = run_models(run_playbook, inventory)
    assert changed_count(second) == 0, second[-4000:]
    assert api.store.writes == writes

    # 3. Check mode reports a catalog edit as a change, through the server's dry run, and writes nothing.
    before = api.store.get("Deployment", "vllm-alpha", "k3sllm")["spec"]
    edited = cluster_inventory([{**catalog("alpha")[0], "gpu_memory_utilization": 0.6}, catalog("beta")[0]])
    checked = run_models(run_playbook, edited, "--check")
    assert changed_count(checked) > 0
    assert api.store.writes == writes
    assert api.store.get("Deployment", "vllm-alpha", "k3sllm")["spec"] == before

    # 4. Removing a model from the catalog prunes its engine; the other stays.
    run_models(run_playbook, cluster_inventory(catalog("alpha")))
    for kind in ("Deployment", "Service", "ServiceMonitor"):
        names = api.store.names(kind)
        assert "vllm-beta" not in names, kind
        assert "vllm-alpha" in names, kind
    config = api.store.get("ConfigMap", "switcher-config", "k3sllm")["data"]["config.yaml"]
    assert "vllm-alpha" in config
    assert "vllm-beta" not in config


def test_generated_token_survives_a_lost_controller_folder(api, cluster_inventory, run_playbook):
    """A generated secret (the switcher's admin token; Grafana's password takes the same path): check
    mode stores nothing anywhere; the first run stores it in the cluster with a 0600 copy on the
    controller; a controller that lost its artifacts folder keeps the cluster's value, and its copy."""
    inventory = cluster_inventory(catalog("alpha"), model_switcher_admin_token="")
    secrets = inventory / "artifacts" / "secrets"
    copy = secrets / "switcher-admin-token"

    # On a bare cluster: the namespace does not exist yet, and a server dry run would refuse what goes in it.
    checked = run_models(run_playbook, inventory, "--check", tags="model_switcher")
    assert changed_count(checked) > 0
    assert "cannot dry-run objects in namespaces that do not exist yet (k3sllm)" in " ".join(checked.split())
    assert not secrets.exists()
    assert api.store.get("Secret", "switcher-admin-token", "k3sllm") is None

    first = run_models(run_playbook, inventory, tags="model_switcher")
    secret = api.store.get("Secret", "switcher-admin-token", "k3sllm")
    token = base64.b64decode(secret["data"]["admin-token"]).decode()
    assert len(token) == 40 and token.isalnum()
    assert token not in first
    assert copy.read_text().strip() == token
    assert copy.stat().st_mode & 0o777 == 0o600

    shutil.rmtree(secrets)
    writes = list(api.store.writes)
    again = run_models(run_playbook, inventory, tags="model_switcher")
    assert token not in again
    assert [w for w in api.store.writes[len(writes) :] if "Secret/" in w] == []
    secret = api.store.get("Secret", "switcher-admin-token", "k3sllm")
    assert base64.b64decode(secret["data"]["admin-token"]).decode() == token
    assert copy.read_text().strip() == token


def test_missing_kubeconfig_names_the_fix(local_inventory, run_playbook):
    inventory = local_inventory({"k3sllm_hostname": "llm.test", "k3sllm_models": catalog("alpha")})
    result = run_playbook("playbooks/models.yml", inventory, "--tags", "vllm")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Run playbooks/k3s.yml" in output
