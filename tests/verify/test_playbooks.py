"""playbooks/verify.yml and playbooks/switch_model.yml as users run them, from a one-host inventory,
against the Kubernetes API stand-in (Secrets, a node advertising the GPU) and the verify stack: the
real switcher in front of vLLM stand-ins, reached with the Prometheus API through the
``kubectl port-forward`` stand-in (tests/verify/stack.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from k3sllm_testlib import changed_count
from verify.stack import ADMIN_TOKEN, MODELS, Stack

from standins.kube_apiserver import KubeApiServer, builtin

MASTER_KEY = "sk-verify-playbook-master-key-0123456789"

pytestmark = pytest.mark.slow


def catalog() -> list[dict]:
    return [
        {
            "name": name,
            "repo": f"test/{name}",
            "revision": "0" * 40,
            "gpu_memory_utilization": 0.9,
            "max_model_len": 4096,
            "aliases": [f"claude-{name}"],
        }
        for name in MODELS
    ]


def put_secret(api: KubeApiServer, name: str, key: str, value: str) -> None:
    data = {key: base64.b64encode(value.encode()).decode()}
    api.store.put(
        builtin("Secret"), {"metadata": {"name": name, "namespace": "k3sllm"}, "type": "Opaque", "data": data}
    )


@pytest.fixture
def cluster_api(stack: Stack):
    with KubeApiServer(nodes=("gpu1",), charts=("gpu-operator",)) as api:
        api.store.put(builtin("Namespace"), {"metadata": {"name": "k3sllm"}, "status": {"phase": "Active"}})
        put_secret(api, "litellm-master-key", "master-key", MASTER_KEY)
        put_secret(api, "switcher-admin-token", "admin-token", ADMIN_TOKEN)
        yield api


@pytest.fixture
def inventory(local_inventory, cluster_api: KubeApiServer, stack: Stack, tmp_path: Path):
    def make(**overrides) -> Path:
        artifacts = tmp_path / "artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "kubeconfig").write_text(cluster_api.kubeconfig())
        group_vars = {
            "k3sllm_hostname": "llm.example.test",
            "k3sllm_artifacts_dir": str(artifacts),
            "k3sllm_models": catalog(),
            # The switcher is OpenAI-compatible: it stands for the gateway here (tests/gateway covers LiteLLM).
            "verify_gateway_url": stack.switcher_url,
            "verify_check_anthropic": False,
            "verify_kubectl": stack.kubectl,
            "verify_concurrency": [1, 4],
            "verify_requests_per_level": 8,
            "verify_max_tokens": 12,
            **overrides,
        }
        return local_inventory(group_vars)

    return make


def test_verify_playbook_writes_the_report(inventory, run_playbook, stack: Stack, cluster_api) -> None:
    folder = inventory(verify_concurrency=[16])
    # As users type it on the command line: a string, which wins over the inventory's list.
    proc = run_playbook(
        "playbooks/verify.yml", folder, "-e", "verify_concurrency=1,4", env=stack.kubectl_env()
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert changed_count(output) == 0
    for secret in (MASTER_KEY, ADMIN_TOKEN):
        assert secret not in output
    (report_file,) = (folder / "reports").glob("verify-*.json")
    report = json.loads(report_file.read_text())
    assert report["verdict"] == "all checks passed"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["GPU advertised (nvidia.com/gpu)"] == {
        "name": "GPU advertised (nvidia.com/gpu)",
        "ok": True,
        "detail": "on gpu1",
    }
    assert {f"chat completion: {m}" for m in MODELS} <= set(checks)
    assert [(lv["concurrency"], lv["requests"]) for lv in report["benchmark"]] == [(1, 8), (4, 8)]
    assert len(report["switches"]) == 6
    # The table is printed, and no credential is left on the controller.
    assert "| alpha | 4 | 8 | 0 |" in output
    assert not list(Path("/tmp").glob("k3sllm-verify-*/secrets.json")) or all(
        MASTER_KEY not in p.read_text() for p in Path("/tmp").glob("k3sllm-verify-*/secrets.json")
    )
    stack.cluster.assert_gpu_safe()


def test_verify_fails_without_a_gpu_and_names_the_fix(
    inventory, run_playbook, stack: Stack, cluster_api
) -> None:
    node = cluster_api.store.get("Node", "gpu1")
    del node["status"]["allocatable"]["nvidia.com/gpu"]
    cluster_api.store.put(builtin("Node"), node)
    folder = inventory(verify_benchmark=False, verify_check_prometheus=False)
    proc = run_playbook("playbooks/verify.yml", folder, env=stack.kubectl_env())
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "| GPU advertised (nvidia.com/gpu) | FAIL | no node advertises nvidia.com/gpu" in output
    assert "Some checks failed" in output
    report = json.loads(next((folder / "reports").glob("verify-*.json")).read_text())
    assert report["verdict"] == "CHECKS FAILED"


def test_bad_settings_fail_before_any_request(inventory, run_playbook, stack: Stack) -> None:
    folder = inventory(verify_concurrency=[0, 8], verify_benchmark_models=["nope"], k3sllm_hostname="")
    del_gateway = folder / "group_vars" / "all" / "main.yml"
    proc = run_playbook("playbooks/verify.yml", folder, env=stack.kubectl_env())
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "verify_concurrency [0, 8]: every level must be a whole number of at least 1" in output
    assert "verify_benchmark_models: nope is not a catalog model or alias" in output
    assert del_gateway.exists()
    assert stack.cluster.manager.models["alpha"].state.value == "awake"
    assert not (folder / "reports").exists()


def test_switch_model(inventory, run_playbook, stack: Stack) -> None:
    folder = inventory()
    proc = run_playbook("playbooks/switch_model.yml", folder, "-e", "model=beta", env=stack.kubectl_env())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert changed_count(output) == 1
    assert "beta is awake (was sleeping, woken in" in output
    assert ADMIN_TOKEN not in output
    assert stack.cluster.state("beta") == "awake" and stack.cluster.state("alpha") == "sleeping"

    # Again: nothing to do, nothing changed.
    proc = run_playbook(
        "playbooks/switch_model.yml", folder, "-e", "model=claude-beta", env=stack.kubectl_env()
    )
    assert proc.returncode == 0
    assert changed_count(proc.stdout) == 0
    assert "beta is awake (it already was)" in proc.stdout


def test_switch_model_refuses_an_unknown_model_before_calling_anything(
    inventory, run_playbook, stack: Stack
) -> None:
    folder = inventory()
    proc = run_playbook("playbooks/switch_model.yml", folder, "-e", "model=delta", env=stack.kubectl_env())
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert (
        "Unknown model delta. Name a catalog model or alias: -e model=<name>, one of alpha, beta, gamma, "
        "claude-alpha, claude-beta, claude-gamma." in output
    )
    assert stack.kubectl_calls() == []

    proc = run_playbook("playbooks/switch_model.yml", folder, env=stack.kubectl_env())
    assert "No model given." in " ".join(proc.stdout.split())
    assert stack.kubectl_calls() == []
