"""The playbooks that handle secrets, run as the README recommends before a change
(``--check --diff -v``), print none of the secrets they are given.

Each run plants distinctive secret values (the K3s token, a registry password, a proxy password,
a server setting that is a secret, the Grafana admin password, the LiteLLM master key and database
password, the Hugging Face token) and searches stdout and stderr for every one of them, and for
their base64 forms (a Secret's ``data`` in a diff). The hosts are this machine with every K3s path
under a temporary folder (release files from the K3s stand-in, no download) and the Kubernetes API
stand-in for the cluster playbooks.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, local_hosts

from standins.k3s_artifacts import build as build_k3s_release
from standins.kube_apiserver import KubeApiServer

pytestmark = pytest.mark.slow

# Distinctive values: any occurrence in the output is a leak, never a coincidence.
SECRETS = {
    "k3s_token": "K3sTokenPlanted-7f3a9c2e51",
    "registry_password": "RegistryPwPlanted-4b8d0e6f12",
    "proxy_password": "ProxyPwPlanted-9c1e7a3b58",
    "server_secret": "EtcdS3KeyPlanted-2d6f8b0a94",
    "grafana_password": "GrafanaPwPlanted-5a9e3c7d16",
    "master_key": "sk-MasterKeyPlanted-8e2b6d4f30",
    "db_password": "DbPwPlanted-1f7c5a9e62",
    "hf_token": "hf_HfTokenPlanted3b7d1f5a",
}
VERSION = "v1.36.9+k3s1"  # not in the role's checksum table: the stand-in's sha256sum file is used

CATALOG = [
    {
        "name": "alpha",
        "repo": "org/tiny",
        "revision": "a" * 40,
        "gpu_memory_utilization": 0.3,
        "max_model_len": 2048,
    }
]


def leaks(output: str) -> list[str]:
    """Names of the planted secrets found in the output, in clear or base64."""
    found = []
    for name, value in SECRETS.items():
        encoded = base64.b64encode(value.encode()).decode()
        if value in output or encoded[:-4] in output:
            found.append(name)
    return found


def write_inventory(folder: Path, group_vars: dict) -> Path:
    (folder / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (folder / "hosts.yml").write_text(yaml.safe_dump(local_hosts(sys.executable)))
    (folder / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(group_vars))
    (folder / "artifacts").mkdir(exist_ok=True)
    return folder


def check_diff(playbook: str, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / playbook),
            "--check",
            "--diff",
            "-v",
            *args,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )


def k3s_settings(root: Path) -> dict:
    """K3s settings that carry every planted secret, with every path under ``root``."""
    release = root / "release"
    build_k3s_release(release, VERSION)
    return {
        "k3sllm_hostname": "llm.test",
        "k3s_version": VERSION,
        "k3s_airgap_dir": str(release / VERSION),
        "k3s_bin_dir": str(root / "bin"),
        "k3s_config_dir": str(root / "etc"),
        "k3s_data_dir": str(root / "data"),
        "k3s_download_dir": str(root / "cache"),
        "k3s_unit_file": str(root / "systemd" / "k3s.service"),
        "k3s_token": SECRETS["k3s_token"],
        "k3s_registries": {
            "mirrors": {"docker.io": {"endpoint": ["https://registry.test"]}},
            "configs": {
                "registry.test": {"auth": {"username": "puller", "password": SECRETS["registry_password"]}}
            },
        },
        "k3s_environment": {"HTTPS_PROXY": f"http://user:{SECRETS['proxy_password']}@proxy.test:3128"},
        "k3s_server_config": {"etcd-s3-secret-key": SECRETS["server_secret"]},
    }


def test_k3s_check_diff_prints_no_secret(tmp_path):
    inventory = write_inventory(tmp_path / "inventory", k3s_settings(tmp_path / "host"))
    result = check_diff("playbooks/k3s.yml", inventory)
    output = result.stdout + result.stderr
    # The run got as far as the files that hold the secrets (their tasks are in the output).
    for task in ("Write config.yaml", "Write registries.yaml", "Write the environment file of the service"):
        assert f"TASK [k3s : {task}]" in output, output[-4000:]
    assert leaks(output) == [], output[-6000:]
    # Check mode wrote nothing that holds a secret.
    assert not (tmp_path / "host" / "etc" / "registries.yaml").exists()


@pytest.mark.timeout(900)
def test_cluster_playbooks_check_diff_print_no_secret(tmp_path):
    group_vars = {
        "k3sllm_hostname": "llm.test",
        "k3sllm_models": CATALOG,
        "k3sllm_hf_token": SECRETS["hf_token"],
        "observability_grafana_admin_password": SECRETS["grafana_password"],
        "litellm_master_key": SECRETS["master_key"],
        "litellm_postgres_password": SECRETS["db_password"],
    }
    charts = ("kube-prometheus-stack", "gpu-operator")
    with KubeApiServer(nodes=("llm",), gpus_per_node=1, charts=charts) as api:
        inventory = write_inventory(tmp_path / "inventory", group_vars)
        (inventory / "artifacts" / "kubeconfig").write_text(api.kubeconfig())
        outputs = {}
        for playbook in ("playbooks/platform.yml", "playbooks/gateway.yml"):
            result = check_diff(playbook, inventory)
            outputs[playbook] = result.stdout + result.stderr
            assert result.returncode == 0, outputs[playbook][-4000:]
        assert api.store.writes == []
    found = {playbook: leaks(output) for playbook, output in outputs.items()}
    assert found == {playbook: [] for playbook in outputs}, json.dumps(found)
