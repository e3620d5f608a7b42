"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, local_hosts

# Test files that share one expensive session fixture: pytest-xdist must give each set to one worker,
# or every worker starts its own (the gateway stack is PostgreSQL, migrations and a LiteLLM start,
# one to four minutes on 2 cores).
SHARED_WORKER_GROUPS = {
    "gateway": (
        "tests/gateway/test_gateway.py",
        "tests/gateway/test_tenants.py",
        "tests/gateway/test_backup.py",
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers the mark itself; with -p no:xdist --strict-markers would refuse it.
    config.addinivalue_line("markers", "xdist_group(name): tests that run on one xdist worker")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per test file (what --dist loadfile did), except the files that share a stack."""
    group_of = {path: group for group, paths in SHARED_WORKER_GROUPS.items() for path in paths}
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        path = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group_of.get(path, path)))


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
