"""Helpers shared by the repository-level tests (importable thanks to pytest's pythonpath)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible-playbook runs from tests: the repo's config, no colour."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def local_hosts(python: str | Path = BIN / "python", **host_vars) -> dict:
    """An inventory's hosts.yml: this machine as the only K3s server (connection local), no agents."""
    localhost = {"ansible_connection": "local", "ansible_python_interpreter": str(python), **host_vars}
    return {
        "all": {
            "children": {
                "k3s_cluster": {
                    "children": {
                        "k3s_server": {"hosts": {"localhost": localhost}},
                        "k3s_agent": {"hosts": {}},
                    }
                }
            }
        }
    }


def changed_count(output: str, host: str = "localhost") -> int:
    """The `changed` count of ``host`` in an ansible-playbook recap."""
    match = re.search(rf"{re.escape(host)}\s+:\s+ok=\d+\s+changed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


def strip_private(obj: dict) -> dict:
    """Drop the bookkeeping keys (``_file``) tests add to rendered objects."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def session_folder(tmp_path_factory, name: str, fill: Callable[[Path], None]) -> Path:
    """A folder filled once per test session, however many pytest-xdist workers ask for it.

    Expensive fixtures (rendering every inventory) would otherwise run once per worker: the first
    worker to ask fills the folder under a lock shared by all workers, the others wait and reuse it.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, shared by the workers
    folder = root / name
    with FileLock(f"{folder}.lock"):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            fill(folder)
            (folder / ".complete").touch()
    return folder
