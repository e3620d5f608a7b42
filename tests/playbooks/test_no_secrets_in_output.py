"""The playbooks that handle secrets, run as the README recommends before a change
(``--check --diff -v``), print none of the secrets they are given.

Each run plants distinctive secret values (the K3s token, a registry password, a proxy password,
a server setting that is a secret, the Grafana admin password, a bring-your-own TLS key, the LiteLLM
master key and database password, the Hugging Face token) and searches stdout and stderr for every one of them, and for
their base64 forms (a Secret's ``data`` in a diff). The hosts are this machine with every K3s path
under a temporary folder (release files from the K3s stand-in, no download) and the Kubernetes API
stand-in for the cluster playbooks.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from k3sllm_testlib import BIN, REPO, ansible_env, local_hosts

from standins.hf_hub import HubStandIn
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


def needles(value: str) -> list[str]:
    """What gives a secret away: the value (a middle slice of a long one, so a truncated print
    counts) and its base64 form (a Secret's ``data``)."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(value) > 80:
        middle = len(value) // 2
        return [value[middle - 20 : middle + 20], encoded[len(encoded) // 2 - 20 : len(encoded) // 2 + 20]]
    return [value, encoded[:-4]]


def leaks(output: str, secrets: dict[str, str] | None = None) -> list[str]:
    """Names of the planted secrets found in the output, in clear or base64."""
    return [name for name, value in (secrets or SECRETS).items() if any(n in output for n in needles(value))]


def self_signed(hostname: str) -> tuple[str, str]:
    """A certificate for ``hostname`` and ``*.hostname`` and its private key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName(f"*.{hostname}")]), False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem


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
        timeout=900,
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


@pytest.mark.timeout(1800)
def test_cluster_playbooks_check_diff_print_no_secret(tmp_path):
    certificate, key = self_signed("llm.test")
    secrets = {**SECRETS, "tls_key": key}
    group_vars = {
        "k3sllm_hostname": "llm.test",
        "tls_mode": "byo",
        "tls_byo_certificate": certificate,
        "tls_byo_key": key,
        "k3sllm_models": CATALOG,
        "observability_grafana_admin_password": SECRETS["grafana_password"],
        "litellm_master_key": SECRETS["master_key"],
        "litellm_postgres_password": SECRETS["db_password"],
    }
    charts = ("kube-prometheus-stack", "gpu-operator")
    with KubeApiServer(nodes=("llm",), gpus_per_node=1, charts=charts) as api:
        inventory = write_inventory(tmp_path / "inventory", group_vars)
        (inventory / "artifacts" / "kubeconfig").write_text(api.kubeconfig())
        outputs = {}
        # The platform roles that handle secrets: tls (the key) and observability (Grafana's password).
        runs = {"playbooks/platform.yml": ("--tags", "tls,observability"), "playbooks/gateway.yml": ()}
        for playbook, args in runs.items():
            result = check_diff(playbook, inventory, *args)
            outputs[playbook] = result.stdout + result.stderr
            assert result.returncode == 0, outputs[playbook][-4000:]
        assert api.store.writes == []
    # The run got as far as the tasks that handle each secret.
    for task in ("Settle Grafana's admin password", "Read the bring-your-own certificate"):
        assert task in outputs["playbooks/platform.yml"], task
    found = {playbook: leaks(output, secrets) for playbook, output in outputs.items()}
    assert found == {playbook: [] for playbook in outputs}, json.dumps(found)


def test_models_check_diff_prints_no_hf_token(tmp_path):
    """The weights play (the one that uses the Hugging Face token) against the Hub stand-in, with a
    gated model that only the planted token may download."""
    hub = HubStandIn(tmp_path / "hub")
    sha = hub.add_commit(
        "standin/gated-tiny",
        {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "model.safetensors": 1 << 20},
        gated="manual",
    )
    hub.grant("standin/gated-tiny", SECRETS["hf_token"])
    model = {**CATALOG[0], "repo": "standin/gated-tiny", "revision": sha, "max_model_len": 256}
    with hub:
        group_vars = {
            "k3sllm_hostname": "llm.test",
            "k3sllm_gpu_required": False,
            "k3sllm_models": [model],
            "k3sllm_weights_dir": str(tmp_path / "weights"),
            "k3sllm_hf_endpoint": hub.url,
            "k3sllm_hf_token": SECRETS["hf_token"],
            "k3sllm_host_ram_reserve_gib": 0.5,
            "model_weights_install_hub": False,
            "model_weights_python": sys.executable,
        }
        inventory = write_inventory(tmp_path / "inventory", group_vars)
        result = check_diff("playbooks/models.yml", inventory, "--tags", "model_weights")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "alpha: would fetch 2 of 2 files" in output, output[-4000:]
    assert leaks(output) == [], output[-6000:]
    assert not (tmp_path / "weights").exists()
