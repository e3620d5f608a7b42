"""Fixtures for the switcher tests: a factory of stand-in clusters that are always cleaned up."""

from __future__ import annotations

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
