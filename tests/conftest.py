"""Fixtures shared by the repository-level tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, local_hosts

# ---------------------------------------------------------------------------------------- xdist scheduling
# `make pytest` runs whole files per worker (--dist loadfile) in collection order
# (--no-loadscope-reorder). The suite's wall time is set by a handful of files that run playbooks or
# real servers for minutes: they go first, longest first, so no worker is left with one of them at the
# end, and the gateway files that share one LiteLLM + PostgreSQL stack (session fixture, one per
# worker) go to one worker, so the stack starts once.
SHARED_STACK_FILES = (
    "tests/gateway/test_gateway.py",
    "tests/gateway/test_tenants.py",
    "tests/gateway/test_backup.py",
    "tests/gateway/test_real_vllm_gateway.py",
)
LONGEST_FIRST = (
    "tests/gateway/",
    "tests/k8s_apply/test_platform.py",
    "tests/k8s_apply/test_apply.py",
    "tests/k8s_apply/test_gateway.py",
    "tests/switcher/test_real_vllm.py",
    "tests/manifests/",
    "tests/models/test_role.py",
    "tests/playbooks/",
    "tests/verify/test_playbooks.py",
    "tests/host/",
)


def _rank(nodeid: str) -> int:
    return next(
        (i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)), len(LONGEST_FIRST)
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.nodeid))  # stable: the order inside a file is kept


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown (and unused) under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadFileScheduling

    class SharedStackFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/gateway (shared stack)" if scope in SHARED_STACK_FILES else scope

    return SharedStackFirst(config, log)


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
