"""Fixtures for the k3s scenario: the two containers (helpers live in k3s_scenario.py).

The files run in name order: test_10 checks the converged cluster, test_20 the checksum failures,
test_30 the upgrade (and refused downgrade), test_40 the reset.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import testinfra

# The test modules import k3s_scenario from this folder (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
SERVER, AGENT = "k3sllm-k3s-a", "k3sllm-k3s-b"


@pytest.fixture(scope="session")
def server():
    return testinfra.get_host(f"podman://{SERVER}")


@pytest.fixture(scope="session")
def agent():
    return testinfra.get_host(f"podman://{AGENT}")
