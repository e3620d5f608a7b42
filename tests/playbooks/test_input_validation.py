"""Bad settings fail before anything changes, with a message naming the setting."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
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


FIXTURES = REPO / "collections/ansible_collections/k3sllm/platform/tests/unit/plugins/modules/fixtures"


def nvidia_smi_standin(folder: Path, cuda: str, compute_cap: str) -> Path:
    """A stand-in nvidia-smi: `-q -x` prints an H100's XML log with the given CUDA version,
    `--query-gpu=index,compute_cap` the given capability (as a real driver answers both)."""
    xml = (
        (FIXTURES / "nvidia-smi-h100.xml")
        .read_text()
        .replace("<cuda_version>12.4</cuda_version>", f"<cuda_version>{cuda}</cuda_version>")
    )
    assert f"<cuda_version>{cuda}</cuda_version>" in xml
    (folder / "nvidia-smi.xml").write_text(xml)
    standin = folder / "nvidia-smi"
    standin.write_text(
        f'#!/bin/sh\ncase "$*" in *compute_cap*) echo "0, {compute_cap}" ;; *) cat {folder / "nvidia-smi.xml"} ;; esac\n'
    )
    standin.chmod(0o755)
    return folder


def failed_checks(output: str) -> list[str]:
    """Names of the checks preflight's one failure message lists ("1. [name] problem")."""
    return [
        line.split("]", 1)[0].split("[", 1)[1]
        for line in output.splitlines()
        if line[:1].isdigit() and ". [" in line
    ]


def test_preflight_lists_every_problem_with_its_fix_in_one_run(local_inventory, run_playbook, tmp_path):
    """Four problems at once, the driver's CUDA and the GPU's compute capability among them: one run
    names them all, each with its fix, and writes nothing."""
    standin = nvidia_smi_standin(tmp_path, cuda="12.4", compute_cap="7.5")
    group_vars = settings(
        k3sllm_gpu_required=True,
        k3sllm_hostname="",
        preflight_min_cpus=4096,
        k3sllm_models=[{**GOOD_MODEL, "dtype": "bfloat16"}],
    )
    result = run_playbook(
        "playbooks/host.yml",
        local_inventory(group_vars),
        "--check",
        "--tags",
        "preflight",
        env={"PATH": f"{standin}:{os.environ['PATH']}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "4 preflight check(s) failed; nothing was changed" in output, output[-4000:]
    assert sorted(failed_checks(output)) == sorted(
        ["CPU threads", "driver CUDA version", "compute capability for model tiny", "host name"]
    )
    message = output[output.index("4 preflight check(s) failed") :].split("Origin:")[0]
    assert message.count("\n   Fix: ") == 4, message
    assert "supports CUDA 12.4" in output and "needs CUDA 13.0 or newer" in output
    assert "Install NVIDIA driver branch 580 or newer" in output
    assert "compute capability 7.5; bfloat16 needs compute capability 8.0" in output
    assert not Path(LAB["preflight_fact_dir"]).exists()


def test_preflight_passes_a_driver_and_gpu_that_fit(local_inventory, run_playbook, tmp_path):
    standin = nvidia_smi_standin(tmp_path, cuda="13.0", compute_cap="9.0")
    group_vars = settings(
        k3sllm_gpu_required=True, k3sllm_models=[{**GOOD_MODEL, "dtype": "bfloat16", "quantization": "fp8"}]
    )
    result = run_playbook(
        "playbooks/host.yml",
        local_inventory(group_vars),
        "--check",
        "--tags",
        "preflight",
        env={"PATH": f"{standin}:{os.environ['PATH']}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for check in ("NVIDIA GPU", "driver CUDA version", "compute capability for model tiny", "VRAM plan"):
        assert f"'{check}: ok'" in output, output[-3000:]


def apt_offers(package: str) -> bool:
    madison = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True, check=False)
    return any(line.split("|")[0].strip() == package for line in madison.stdout.splitlines())


@pytest.mark.skipif(
    shutil.which("apt-cache") is None or shutil.which("nvidia-smi") is not None,
    reason="needs apt and no NVIDIA driver",
)
def test_preflight_before_the_driver_checks_the_planned_branch_and_the_kernel_headers(
    local_inventory, run_playbook
):
    """No driver yet: the branch nvidia_driver would install decides the CUDA check, and apt must offer
    modules or headers for the running kernel (whether it does is this machine's fact, read here too)."""
    group_vars = settings(k3sllm_gpu_required=True, nvidia_driver_branch="535")
    result = run_playbook("playbooks/host.yml", local_inventory(group_vars), "--check", "--tags", "preflight")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    failed = failed_checks(output)
    assert "driver CUDA version" in failed
    assert (
        "Driver branch 535 (nvidia_driver_branch, what this run would install) supports CUDA 12.2" in output
    )
    kernel = os.uname().release
    headers = f"linux-headers-{kernel}"
    modules_possible = Path(f"/lib/modules/{kernel}/build").exists() or apt_offers(headers)
    if Path("/etc/debian_version").exists() and not Path("/etc/lsb-release").exists():
        assert ("kernel modules for the running kernel" in failed) is not modules_possible, output[-3000:]
        if not modules_possible:
            assert f"DKMS needs the headers of the running kernel {kernel}, and {headers}" in output
    assert "'kernel modules for the running kernel: " in output
