"""playbooks/platform.yml end to end against the Kubernetes API stand-in acting as a bare K3s server
(its pretend helm-controller, cert-manager and GPU Operator; see standins/kube_apiserver.py): check
mode on the bare cluster, the install with every wait (chart CRDs, cert-manager's webhook, the CA,
the GPU on the node), an idempotent re-run, and a GPU that never shows up."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, changed_count

from standins.kube_apiserver import FAKE_PEM, KubeApiServer

pytestmark = pytest.mark.slow

CATALOG = [
    {
        "name": name,
        "repo": "org/tiny",
        "revision": "a" * 40,
        "gpu_memory_utilization": 0.3,
        "max_model_len": 2048,
    }
    for name in ("alpha", "beta")
]


@pytest.fixture
def platform(local_inventory, run_playbook):
    """Run playbooks/platform.yml against a stand-in cluster; returns (returncode, output in one line)."""

    def _make(api: KubeApiServer, **settings):
        inventory = local_inventory({"k3sllm_hostname": "llm.test", "k3sllm_models": CATALOG, **settings})
        (inventory / "artifacts").mkdir(exist_ok=True)
        (inventory / "artifacts" / "kubeconfig").write_text(api.kubeconfig())

        def run(*args: str) -> tuple[int, str]:
            result = run_playbook("playbooks/platform.yml", inventory, *args)
            return result.returncode, " ".join((result.stdout + result.stderr).split())

        return inventory, run

    return _make


# Several playbook runs, each bounded by run_playbook's limit; the suite's default 300 s is for one.
@pytest.mark.timeout(900)
def test_platform_installs_on_a_bare_k3s_then_changes_nothing(platform):
    with KubeApiServer(nodes=("llm",), gpus_per_node=1) as api:
        inventory, run = platform(api)

        # 1. Check mode on the bare cluster: reports the changes, writes nothing, says what it cannot preview.
        code, checked = run("--check")
        assert code == 0, checked[-4000:]
        assert changed_count(checked) > 0
        assert api.store.writes == []
        assert "cert-manager is not installed yet" in checked
        assert "kube-prometheus-stack is not installed yet" in checked
        assert "cannot dry-run objects in namespaces that do not exist yet" in checked
        assert not (inventory / "artifacts" / "ca.crt").exists()

        # 2. The install, through every wait: the charts, the CRDs they bring, the webhook, the CA, the GPU.
        code, first = run()
        assert code == 0, first[-4000:]
        assert api.store.names("HelmChart") == ["cert-manager", "gpu-operator", "kube-prometheus-stack"]
        assert api.store.names("ClusterIssuer") == ["k3sllm-ca", "k3sllm-selfsigned"]
        assert "k3sllm-ca" in api.store.names("Certificate")
        assert api.store.names("PrometheusRule"), "the alert rules were not applied"
        assert "traefik" in api.store.names("HelmChartConfig")
        node = api.store.get("Node", "llm")
        assert node["metadata"]["labels"]["k3sllm.io/gpu"] == "true"
        assert (inventory / "artifacts" / "ca.crt").read_text() == FAKE_PEM
        grafana = api.store.get("Secret", "grafana-admin", "monitoring")
        password = base64.b64decode(grafana["data"]["admin-password"]).decode()
        assert len(password) == 32 and password not in first
        assert (
            inventory / "artifacts" / "secrets" / "grafana-admin-password"
        ).read_text().strip() == password

        # 3. A second run changes and writes nothing; so does check mode on the installed cluster.
        writes = list(api.store.writes)
        code, second = run()
        assert code == 0, second[-4000:]
        assert changed_count(second) == 0, second[-4000:]
        assert api.store.writes == writes
        code, checked_again = run("--check")
        assert code == 0, checked_again[-4000:]
        assert changed_count(checked_again) == 0, checked_again[-4000:]


def test_a_gpu_that_never_shows_up_names_the_setting_and_where_to_look(platform):
    with KubeApiServer(nodes=("llm",), gpus_per_node=0) as api:
        _inventory, run = platform(api, gpu_operator_wait_timeout=1)
        code, output = run("--tags", "gpu_operator")
        assert code != 0
        assert "No node advertised nvidia.com/gpu within 1 s (gpu_operator_wait_timeout)" in output
        assert "nvidia-smi" in output
        assert "k3sllm.io/gpu" not in api.store.get("Node", "llm")["metadata"]["labels"]


CRD_KINDS = {
    "alertmanagerconfigs": "AlertmanagerConfig",
    "alertmanagers": "Alertmanager",
    "podmonitors": "PodMonitor",
    "probes": "Probe",
    "prometheusagents": "PrometheusAgent",
    "prometheuses": "Prometheus",
    "prometheusrules": "PrometheusRule",
    "scrapeconfigs": "ScrapeConfig",
    "servicemonitors": "ServiceMonitor",
    "thanosrulers": "ThanosRuler",
}
SCHEMA_MARKER = "k3sllm test CRD schema"


def write_crds(folder, release: str) -> list[str]:
    """The CRD files the observability role applies (an airgap folder), marked with ``release``."""
    names = yaml.safe_load((REPO / "roles/observability/defaults/main.yml").read_text())["observability_crds"]
    folder.mkdir()
    for file_name in names:
        group, plural = file_name.removesuffix(".yaml").split("_")
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": f"{plural}.{group}",
                "annotations": {"operator.prometheus.io/version": release},
            },
            "spec": {
                "group": group,
                "names": {"kind": CRD_KINDS[plural], "plural": plural},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "description": SCHEMA_MARKER}},
                    }
                ],
            },
        }
        (folder / file_name).write_text(yaml.safe_dump(crd))
    return [
        f"{file_name.removesuffix('.yaml').split('_')[1]}.{file_name.split('_')[0]}" for file_name in names
    ]


@pytest.mark.timeout(1800)
def test_chart_upgrade_applies_the_monitoring_crds_before_the_charts(platform, tmp_path):
    charts = ("kube-prometheus-stack", "cert-manager", "gpu-operator")
    with KubeApiServer(nodes=("llm",), gpus_per_node=1, charts=charts) as api:
        crds = write_crds(tmp_path / "crds", "v0.93.1")
        inventory, _run = platform(api, observability_crd_dir=str(tmp_path / "crds"))

        def run(*args: str) -> tuple[int, str]:
            # Three plays, two of them on this host with facts: more than run_playbook's limit on a busy machine.
            result = subprocess.run(
                [
                    str(BIN / "ansible-playbook"),
                    "-i",
                    str(inventory),
                    str(REPO / "playbooks/upgrade.yml"),
                    *args,
                ],
                cwd=REPO,
                env=ansible_env(),
                capture_output=True,
                text=True,
                timeout=900,
            )
            return result.returncode, result.stdout + result.stderr

        code, checked = run("--check", "--tags", "charts")
        assert code == 0, checked[-4000:]
        assert api.store.writes == []

        code, first = run("--tags", "charts")
        assert code == 0, first[-4000:]
        for name in crds:
            crd = api.store.get("CustomResourceDefinition", name)
            assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == "v0.93.1", name
        writes = api.store.writes
        first_crd = min(i for i, w in enumerate(writes) if w.startswith("apply CustomResourceDefinition/"))
        chart_write = min(i for i, w in enumerate(writes) if w.endswith("HelmChart/kube-prometheus-stack"))
        assert first_crd < chart_write, writes
        # The CRDs' content never reaches the output (each is hundreds of KiB upstream).
        assert SCHEMA_MARKER not in first

        writes = list(api.store.writes)
        code, second = run("--tags", "charts")
        assert code == 0, second[-4000:]
        assert changed_count(second) == 0, second[-4000:]
        assert api.store.writes == writes
