"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, local_hosts


@pytest.fixture
def local_inventory(tmp_path: Path):
    """Write a one-host inventory (this machine, connection local) with the given group vars."""

    def _make(group_vars: dict) -> Path:
        folder = tmp_path / "inventory"
        (folder / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
        (folder / "hosts.yml").write_text(yaml.safe_dump(local_hosts(sys.executable)))
        (folder / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(group_vars))
        return folder

    return _make


@pytest.fixture
def run_playbook():
    def _run(
        playbook: str, inventory: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args],
            cwd=REPO,
            env=ansible_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=240,
        )

    return _run
