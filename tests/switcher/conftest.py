"""Fixtures for the switcher tests: a factory of stand-in clusters that are always cleaned up."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from standins.vllm_cluster import Cluster, start_cluster


@pytest.fixture
async def make_cluster():
    clusters: list[Cluster] = []

    async def make(*args, **kwargs) -> Cluster:
        cluster = await start_cluster(*args, **kwargs)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        await cluster.close()


# ------------------------------------------------------------------ mutation runs (make mutation)
# mutmut runs the tests that cover a mutated function with -x, in the order it is given them (a
# set's order). Under a mutant, run them fastest first, so that a mutant the tests notice costs
# its first failing test and not the slow ones before it, and give each test a short timeout, so
# that a mutant that makes the switcher hang is reported after seconds instead of the suite's 300 s.
# Neither changes what a test checks (the slowest one under a mutant takes 5.5 s, unloaded). Two
# tests that start the switcher as a separate Python process (a config error, a busy port: the
# process's exit, not the policy) are left out, as test_cli.py is in pyproject's [tool.mutmut]: a
# cold interpreter costs each surviving mutant 10-20 s on a busy machine.
MUTATION_TEST_TIMEOUT_S = 15
NOT_UNDER_MUTANTS = {
    "tests/switcher/test_config.py::test_cli_exits_non_zero_naming_the_field",
    "tests/switcher/test_hardening.py::test_busy_port_exits_with_one_clear_line",
}


def _mutant_under_test() -> str:
    return os.environ.get("MUTANT_UNDER_TEST", "")


def pytest_collection_modifyitems(config, items):
    if "__mutmut_" not in _mutant_under_test():
        return
    # mutmut's own record of each test's duration, written by its first (stats) run in mutants/.
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        durations = {}
    left_out = [item for item in items if item.nodeid in NOT_UNDER_MUTANTS]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.nodeid not in NOT_UNDER_MUTANTS]
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
    for item in items:
        item.add_marker(pytest.mark.timeout(MUTATION_TEST_TIMEOUT_S))
