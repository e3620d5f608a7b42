"""Helpers shared by the repository-level tests (importable thanks to pytest's pythonpath)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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


def strip_private(obj: dict) -> dict:
    """Drop the bookkeeping keys (``_file``) tests add to rendered objects."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}
