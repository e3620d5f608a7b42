"""Many clients, a random mix of models, a fixed time: nothing fails, nothing over-commits."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from standins.vllm_engine import Timings

pytestmark = pytest.mark.slow

DURATION = 3.0
RESIDENCY = 0.25
POLICY = {
    "min_residency_seconds": RESIDENCY,
    # An idle model is evicted at once (work-conserving); a grace as long as the residency makes
    # "idle" mean "served nothing for a residency", so the bound below holds on a slow machine too.
    "demand_grace_seconds": RESIDENCY,
    "queue_max_per_model": 1000,
    "drain_timeout_seconds": 5,
}


async def hammer(c, models: list[str], clients: int, seed: int) -> tuple[int, list]:
    rng = random.Random(seed)
    stop = time.monotonic() + DURATION
    done = 0
    problems: list = []

    async def client(i: int) -> None:
        nonlocal done
        while time.monotonic() < stop:
            model = rng.choice(models)
            path = rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
            stream = path != "/v1/embeddings" and rng.random() < 0.5
            r = await c.request(model, stream=stream, max_tokens=rng.randint(1, 6), path=path)
            if (
                r.status != 200
                or r.model != model
                or (path != "/v1/embeddings" and r.finish_reason != "length")
            ):
                problems.append((model, path, stream, r.status, r.body, r.finish_reason))
            done += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return done, problems


def total_switches(c, models) -> float:
    return sum(c.metric("k3sllm_switcher_switches_total", model=m, outcome="success") for m in models)


async def test_random_mix_one_gpu_one_model_at_a_time(make_cluster):
    names = ["a", "b", "c"]
    c = await make_cluster(
        [{"name": n} for n in names],
        timings=Timings(token_s=0.002, sleep_s=0.02, wake_s=0.02),
        policy=POLICY,
    )
    done, problems = await hammer(c, names, clients=24, seed=1)
    assert problems == []
    assert done > 100
    switches = total_switches(c, names)
    # A model with demand keeps the GPU for its residency; one without demand (nothing in flight or
    # queued, nothing served for a grace as long as the residency) gives way at once. Either way the
    # previous model was awake for a residency: at most one switch per residency.
    assert 3 <= switches <= DURATION / RESIDENCY + 2, switches
    assert sum(len(e.stats.wakes) for e in c.engines.values()) == switches
    assert c.metric("k3sllm_switcher_switches_total", model="a", outcome="failed") == 0
    c.assert_gpu_safe()


async def test_random_mix_with_coresidency(make_cluster):
    names = ["a", "b", "c", "d"]
    c = await make_cluster(
        [{"name": n, "vram": 15, "priority": 1 if n == "a" else 0} for n in names],
        coresidency=True,
        gpu_gib=40,
        residual_gib=1,
        awake=("a", "b"),
        timings=Timings(token_s=0.002, sleep_s=0.02, wake_s=0.02),
        policy=POLICY,
    )
    done, problems = await hammer(c, names, clients=24, seed=2)
    assert problems == []
    assert done > 100
    # two fit at once: at most one switch per residency for each of the two GPU slots
    assert total_switches(c, names) <= 2 * (DURATION / RESIDENCY + 2)
    assert c.ledger.max_committed <= 40
    c.assert_gpu_safe()
