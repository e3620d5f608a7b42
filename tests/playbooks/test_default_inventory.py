"""A run without -i reads no inventory from the working folder (and so executes nothing in it)."""

from __future__ import annotations

import shutil
import subprocess

from k3sllm_testlib import BIN, REPO, ansible_env


def test_run_without_inventory_executes_no_file_below_the_config(tmp_path):
    """With an empty `inventory =` Ansible took the working folder for an inventory directory and ran
    every executable below it with --list: scripts/setup-vllm-cpu.sh then deleted .venv-vllm while it
    was being built. The repo's ansible.cfg, copied beside a probe, must leave the probe alone."""
    shutil.copy(REPO / "ansible.cfg", tmp_path / "ansible.cfg")
    (tmp_path / "inventories").mkdir()
    shutil.copy(REPO / "inventories" / "none.yml", tmp_path / "inventories" / "none.yml")
    ran = tmp_path / "probe-ran"
    probe = tmp_path / "scripts" / "probe.sh"
    probe.parent.mkdir()
    probe.write_text(f'#!/bin/sh\necho "$@" >> {ran}\necho "{{}}"\n')
    probe.chmod(0o755)
    (tmp_path / "play.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks: []\n")

    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "play.yml"],
        cwd=tmp_path,
        env=ansible_env(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not ran.exists(), f"Ansible executed {probe} as an inventory script: {ran.read_text()!r}"

    inventory = subprocess.run(
        [
            str(
                BIN / "ansible-inventory",
            ),
            "--list",
        ],
        cwd=tmp_path,
        env=ansible_env(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert '"hosts"' not in inventory.stdout, inventory.stdout
    assert not ran.exists()
