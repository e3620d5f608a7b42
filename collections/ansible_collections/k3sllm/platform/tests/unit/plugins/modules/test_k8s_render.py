"""k8s_render: one file per object, secrets redacted, stale files pruned, honest check mode."""

from __future__ import annotations

import yaml

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_objects import REDACTED, file_name
from ansible_collections.k3sllm.platform.plugins.modules import k8s_render

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "K3sllm_NS"}}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg", "namespace": "k3sllm"},
    "data": {"script.py": "import os\nprint(os.getcwd())\n"},
}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "s", "namespace": "k3sllm"},
    "stringData": {"password": "hunter2"},
}


def test_file_names_are_ordered_and_safe():
    assert file_name(NAMESPACE, 0) == "00-namespace-k3sllm-ns.yml"
    assert file_name(CONFIGMAP, 1) == "01-configmap-k3sllm-cfg.yml"


def test_writes_redacts_and_reads_back(tmp_path, run_module):
    dest = tmp_path / "rendered" / "switcher"
    result = run_module(k8s_render.main, {"dest": str(dest), "objects": [NAMESPACE, CONFIGMAP, SECRET]})
    assert result["changed"] is True
    assert sorted(p.name for p in dest.iterdir()) == result["files"] == result["written"]
    configmap = yaml.safe_load((dest / "01-configmap-k3sllm-cfg.yml").read_text())
    assert configmap == CONFIGMAP
    # Multi-line values stay readable as block scalars.
    assert "script.py: |" in (dest / "01-configmap-k3sllm-cfg.yml").read_text()
    secret_text = (dest / "02-secret-k3sllm-s.yml").read_text()
    assert "hunter2" not in secret_text
    assert yaml.safe_load(secret_text)["stringData"]["password"] == REDACTED


def test_second_run_changes_nothing(tmp_path, run_module):
    args = {"dest": str(tmp_path), "objects": [NAMESPACE, CONFIGMAP]}
    run_module(k8s_render.main, args)
    again = run_module(k8s_render.main, args)
    assert again["changed"] is False
    assert again["written"] == again["removed"] == []


def test_stale_files_are_removed_and_others_kept(tmp_path, run_module):
    run_module(k8s_render.main, {"dest": str(tmp_path), "objects": [NAMESPACE, CONFIGMAP]})
    (tmp_path / "README.md").write_text("notes kept by the user\n")
    result = run_module(k8s_render.main, {"dest": str(tmp_path), "objects": [NAMESPACE]})
    assert result["removed"] == ["01-configmap-k3sllm-cfg.yml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00-namespace-k3sllm-ns.yml", "README.md"]


def test_check_mode_reports_and_writes_nothing(tmp_path, run_module):
    dest = tmp_path / "out"
    result = run_module(
        k8s_render.main, {"dest": str(dest), "objects": [NAMESPACE], "_ansible_check_mode": True}
    )
    assert result["changed"] is True
    assert result["written"] == ["00-namespace-k3sllm-ns.yml"]
    assert not dest.exists()
