"""Shared verifier step: on a converged host, --check must report no change.

Molecule's own `check` action runs converge in check mode but passes whatever it reports, so the
scenarios leave it out of their test_sequence and assert instead: each scenario's tests call
``assert_check_mode_unchanged()`` from a ``test_00_check_mode.py`` (so it runs before tests that
change the hosts): it re-runs the scenario's converge playbook with --check
against the same inventory and fails on any `changed` task, naming it.
"""

import os
import re
import subprocess
from pathlib import Path

import yaml


def converge_playbook() -> Path:
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    playbook = (config.get("provisioner") or {}).get("playbooks", {}).get("converge", "converge.yml")
    return (scenario / playbook).resolve()


def changed_tasks(output: str) -> list[str]:
    """Name each task that reported a change, with the host."""
    task, found = "?", []
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6 : line.index("]")]
        elif line.startswith("changed: ["):
            found.append(f"{task} on {line[10 : line.index(']')]}")
    return found


def assert_check_mode_unchanged(limit: str | None = None) -> None:
    """Run converge with --check (optionally on some hosts only) and require changed=0 everywhere."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    command = ["ansible-playbook", "-i", str(inventory), "--check", str(converge_playbook())]
    if limit:
        command += ["--limit", limit]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    assert recap, output[-2000:]
    assert all(count == "0" for _host, count in recap), (
        f"check mode reported changes in: {changed_tasks(output)}"
    )
