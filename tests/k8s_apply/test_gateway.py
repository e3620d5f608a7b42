"""playbooks/gateway.yml end to end against the Kubernetes API stand-in (a K3s server after the platform
play: the Prometheus Operator's CRDs exist, the GPU node is labelled): check mode on the bare namespace,
the install, an idempotent re-run and an honest check mode, workers sized from the node's cores, and the
master key and database password never in the output."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
import yaml
from k3sllm_testlib import changed_count

from ansible_collections.k3sllm.platform.plugins.module_utils import litellm_config as gw
from standins.kube_apiserver import KubeApiServer

pytestmark = pytest.mark.slow

CATALOG = [
    {
        "name": "alpha",
        "repo": "org/tiny",
        "revision": "a" * 40,
        "gpu_memory_utilization": 0.3,
        "max_model_len": 2048,
        "aliases": ["claude-sonnet-4-5"],
        "tool_call_parser": "hermes",
    },
    {
        "name": "beta",
        "repo": "org/tiny",
        "revision": "b" * 40,
        "gpu_memory_utilization": 0.3,
        "max_model_len": 2048,
    },
]
CORES = 32


def secret_value(api: KubeApiServer, name: str, key: str) -> str:
    return base64.b64decode(api.store.get("Secret", name, "k3sllm")["data"][key]).decode()


@pytest.fixture
def gateway(local_inventory, run_playbook):
    def _make(api: KubeApiServer, **settings):
        inventory = local_inventory({"k3sllm_hostname": "llm.test", "k3sllm_models": CATALOG, **settings})
        (inventory / "artifacts").mkdir(exist_ok=True)
        (inventory / "artifacts" / "kubeconfig").write_text(api.kubeconfig())

        def run(*args: str) -> tuple[int, str]:
            result = run_playbook("playbooks/gateway.yml", inventory, "-v", *args)
            return result.returncode, result.stdout + result.stderr

        return inventory, run

    return _make


# Five playbook runs (30-60 s each on a loaded 2-core machine).
@pytest.mark.timeout(900)
def test_gateway_installs_then_changes_nothing(gateway):
    charts = ("kube-prometheus-stack", "gpu-operator")
    with KubeApiServer(nodes=("llm",), cpus_per_node=CORES, charts=charts) as api:
        inventory, run = gateway(api)
        secrets = inventory / "artifacts" / "secrets"

        # 1. Check mode before the first install: reports the changes, writes nothing anywhere.
        code, checked = run("--check")
        assert code == 0, checked[-4000:]
        assert changed_count(checked) > 0
        assert api.store.writes == []
        assert not (secrets / "litellm-master-key").exists()

        # 2. The install.
        code, first = run()
        assert code == 0, first[-4000:]
        assert sorted(api.store.names("Deployment")) == ["litellm", "litellm-postgres"]
        assert "litellm" in api.store.names("Ingress")
        assert "litellm" in api.store.names("ServiceMonitor")
        master_key = secret_value(api, "litellm-master-key", "master-key")
        password = secret_value(api, "litellm-postgres", "password")
        url = secret_value(api, "litellm-postgres", "database-url")
        assert master_key.startswith("sk-") and len(master_key) == 43
        assert len(password) == 32
        assert (
            url == f"postgresql://litellm:{quote(password, safe='')}@litellm-postgres.k3sllm.svc:5432/litellm"
        )
        assert (secrets / "litellm-master-key").read_text().strip() == master_key
        assert (secrets / "litellm-postgres-password").read_text().strip() == password
        for value in (master_key, password):
            assert value not in first and value not in checked
        # Workers from the GPU node's cores as the cluster reports them.
        deployment = api.store.get("Deployment", "litellm", "k3sllm")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        workers = gw.gateway_workers(CORES)
        assert f"--num_workers={workers}" in container["args"]
        config = yaml.safe_load(api.store.get("ConfigMap", "litellm-config", "k3sllm")["data"]["config.yaml"])
        assert {e["model_name"] for e in config["model_list"]} == {"alpha", "beta", "claude-sonnet-4-5"}
        for value in (master_key, password):
            assert value not in api.store.get("ConfigMap", "litellm-config", "k3sllm")["data"]["config.yaml"]

        # 3. A second run changes and writes nothing, keeps the secrets; so does check mode now.
        writes = list(api.store.writes)
        code, second = run()
        assert code == 0, second[-4000:]
        assert changed_count(second) == 0, second[-4000:]
        assert api.store.writes == writes
        assert secret_value(api, "litellm-master-key", "master-key") == master_key
        code, checked_again = run("--check")
        assert code == 0, checked_again[-4000:]
        assert changed_count(checked_again) == 0, checked_again[-4000:]

        # 4. A controller that lost its artifacts folder gets the cluster's values back, rotates nothing.
        (secrets / "litellm-master-key").unlink()
        (secrets / "litellm-postgres-password").unlink()
        code, third = run()
        assert code == 0, third[-4000:]
        assert secret_value(api, "litellm-master-key", "master-key") == master_key
        assert (secrets / "litellm-master-key").read_text().strip() == master_key
        assert (secrets / "litellm-postgres-password").read_text().strip() == password
        assert master_key not in third and password not in third


def test_vault_secrets_win_and_never_reach_the_output(gateway):
    master_key, password = "sk-from-vault-0123456789abcdefghij", "vault/pass@word:1"
    with KubeApiServer(nodes=("llm",), cpus_per_node=4, charts=("kube-prometheus-stack",)) as api:
        inventory, run = gateway(api, litellm_master_key=master_key, litellm_postgres_password=password)
        code, output = run()
        assert code == 0, output[-4000:]
        assert secret_value(api, "litellm-master-key", "master-key") == master_key
        assert secret_value(api, "litellm-postgres", "password") == password
        assert quote(password, safe="") in secret_value(api, "litellm-postgres", "database-url")
        for value in (master_key, password, quote(password, safe="")):
            assert value not in output
        # From vault, nothing is copied to the controller.
        assert not (inventory / "artifacts" / "secrets" / "litellm-master-key").exists()
        # No GPU label on a node: the smallest node's cores decide (4 cores: the minimum of 2 workers).
        (container,) = api.store.get("Deployment", "litellm", "k3sllm")["spec"]["template"]["spec"][
            "containers"
        ]
        assert "--num_workers=2" in container["args"]


def test_a_master_key_without_sk_fails_before_any_change(gateway):
    with KubeApiServer(nodes=("llm",), charts=("kube-prometheus-stack",)) as api:
        _inventory, run = gateway(api, litellm_master_key="plain-key-0123456789abcdef")
        code, output = run()
        assert code != 0
        assert 'litellm_master_key must start with "sk-"' in " ".join(output.split())
        assert "plain-key-0123456789abcdef" not in output
        assert api.store.writes == []
