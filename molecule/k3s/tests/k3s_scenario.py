"""Helpers of the k3s scenario's tests (conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
STANDIN = EPHEMERAL / "k3s-standin"
KUBECONFIG = INVENTORY.parent / "artifacts" / "kubeconfig"
SERVER, AGENT = "k3sllm-k3s-a", "k3sllm-k3s-b"
OLD, NEW = "v1.36.2+k3s1", "v1.36.3+k3s1"


def playbook(
    name: str, *extra_vars: dict, verbose: bool = True, timeout: int = 1100, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run one of the product playbooks against the scenario's inventory (the rolling upgrade of two
    nodes took over 300 s on a busy 2-core machine; test_30_upgrade allows 1200 s)."""
    command = ["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / "playbooks" / name), *args]
    if verbose:
        command.append("-v")
    for extra in extra_vars:
        command += ["-e", json.dumps(extra)]
    return subprocess.run(
        command, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """The run's output with line wrapping undone (the yaml callback folds long messages)."""
    return " ".join((result.stdout + result.stderr).split())


def installed_version(host) -> str:
    return host.check_output("/usr/local/bin/k3s --version").splitlines()[0].split()[2]


def starts(host) -> list[str]:
    """Versions of every start of the stand-in, oldest first."""
    log = host.file("/var/lib/rancher/k3s/standin-starts")
    return [line.split()[1] for line in log.content_string.splitlines()] if log.exists else []


def config(host, path: str = "/etc/rancher/k3s/config.yaml") -> dict:
    return yaml.safe_load(host.file(path).content_string)
