"""Bad settings fail before anything changes, with a message naming the setting."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from k3sllm_testlib import REPO

GOOD_MODEL = {
    "name": "tiny",
    "repo": "org/tiny",
    "revision": "0" * 40,
    "gpu_memory_utilization": 0.4,
    "max_model_len": 2048,
}
# Thresholds low enough for any test machine, and no GPU: only the setting under test is wrong.
LAB = {
    "k3sllm_hostname": "llm.test",
    "k3sllm_gpu_required": False,
    "preflight_min_memory_gib": 0.5,
    "preflight_min_cpus": 1,
    "preflight_min_disk_gib": 0.1,
    "preflight_fact_dir": "/nonexistent/k3sllm-test-must-not-be-created",
    "preflight_required_ports": [],
    "k3sllm_models": [GOOD_MODEL],
}


def settings(**changes):
    merged = copy.deepcopy(LAB)
    merged.update(changes)
    return merged


pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"preflight_min_cpus": "many"}, ["preflight_min_cpus", "int"]),
        ({"k3sllm_sleep_level": 3}, ["k3sllm_sleep_level", "1, 2"]),
        (
            {"k3sllm_models": [{k: v for k, v in GOOD_MODEL.items() if k != "repo"}]},
            ["repo", "k3sllm_models"],
        ),
        ({"k3sllm_models": [{**GOOD_MODEL, "max_model_len": "long"}]}, ["max_model_len"]),
        ({"k3sllm_models": [GOOD_MODEL, GOOD_MODEL]}, ["duplicate names: tiny"]),
        ({"k3sllm_models": [{**GOOD_MODEL, "name": "Tiny_Model"}]}, ['"Tiny_Model"', "Kubernetes name"]),
        (
            {"k3sllm_models": [GOOD_MODEL, {**GOOD_MODEL, "name": "other", "aliases": ["tiny"]}]},
            ["used more than once: tiny"],
        ),
        ({"k3sllm_hostname": ""}, ["k3sllm_hostname", "group_vars"]),
        ({"k3sllm_hostname": "LLM_host"}, ["k3sllm_hostname"]),
        ({"preflight_min_disk_gib": 10**9}, ["preflight_min_disk_gib", "k3sllm_weights_dir"]),
    ],
    ids=[
        "wrong-type",
        "bad-choice",
        "model-missing-field",
        "model-wrong-type",
        "duplicate-model",
        "bad-model-name",
        "alias-clash",
        "empty-hostname",
        "invalid-hostname",
        "disk-too-small",
    ],
)
def test_bad_setting_fails_before_changes(local_inventory, run_playbook, changes, expected):
    result = run_playbook("playbooks/host.yml", local_inventory(settings(**changes)))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, f"{text!r} missing from:\n{output[-3000:]}"
    # Nothing was written: the fact folder is the only thing preflight creates, and it comes last.
    assert not Path(LAB["preflight_fact_dir"]).exists()
    assert "changed=0" in output


def test_good_settings_pass_preflight_in_check_mode(local_inventory, run_playbook):
    result = run_playbook("playbooks/host.yml", local_inventory(settings()), "--check", "--tags", "preflight")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "LAB MODE" in output


def test_catalog_that_does_not_fit_the_gpu_fails_in_preflight(local_inventory, run_playbook, tmp_path):
    """With a driver answering (a stand-in nvidia-smi printing an H100's XML), preflight plans VRAM."""
    fixture = REPO / "collections/ansible_collections/k3sllm/platform/tests/unit/plugins/modules/fixtures"
    standin = tmp_path / "bin" / "nvidia-smi"
    standin.parent.mkdir()
    standin.write_text(f"#!/bin/sh\ncat {fixture / 'nvidia-smi-h100.xml'}\n")
    standin.chmod(0o755)
    too_big = [
        {**GOOD_MODEL, "name": "big-a", "gpu_memory_utilization": 0.6, "awake_by_default": True},
        {**GOOD_MODEL, "name": "big-b", "gpu_memory_utilization": 0.6, "awake_by_default": True},
    ]
    result = run_playbook(
        "playbooks/host.yml",
        local_inventory(settings(k3sllm_models=too_big)),
        "--check",
        "--tags",
        "preflight",
        env={"PATH": f"{standin.parent}:{os.environ['PATH']}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Capacity plan:" in output
    assert "big-a" in output and "big-b" in output
    assert not Path(LAB["preflight_fact_dir"]).exists()
