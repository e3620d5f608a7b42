"""Fixtures for the observability artefacts' tests (alert rules and dashboards)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = REPO / ".build" / "promtool" / "usr" / "bin" / "promtool"
GET_PROMTOOL = REPO / "scripts" / "get-promtool.sh"


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool, fetched by scripts/get-promtool.sh (Debian's prometheus package) when missing."""
    if not (PROMTOOL.is_file() and os.access(PROMTOOL, os.X_OK)):
        result = subprocess.run(
            [str(GET_PROMTOOL)], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"scripts/get-promtool.sh failed:\n{result.stdout}\n{result.stderr}")
    assert PROMTOOL.is_file(), f"no promtool at {PROMTOOL}"
    return PROMTOOL
