"""The manager's parts (switcher/state.py, transitions.py, scheduling.py, health.py, idle.py,
manager.py) where the rest of the suite ran the code without pinning what users see (found by
`make mutation`)."""

from __future__ import annotations

import asyncio

import pytest

from standins.vllm_cluster import wait_until

AB = [{"name": "a"}, {"name": "b"}]


async def test_a_half_woken_engine_is_put_back_to_sleep_with_the_configured_sleep_mode(make_cluster):
    # policy.sleep_mode "wait": every /sleep the switcher sends carries it, the one that puts a
    # half-woken engine back to sleep too (without it, vLLM would abort that engine's requests).
    c = await make_cluster(
        AB,
        policy={
            "sleep_mode": "wait",
            "wake_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    c.engines["b"].faults.busy_prefix_resets = 1_000_000  # b's wake times out with its engine awake
    r = await c.request("b")
    assert r.status == 503 and c.state("b") == "failed" and c.engines["b"].state == "sleeping"
    assert c.engines["a"].stats.sleep_modes == ["wait"]
    assert c.engines["b"].stats.sleep_modes == ["wait"]
    await wait_until(lambda: c.state("a") == "awake", what="a woken again")
    c.assert_gpu_safe()


async def test_a_request_cancelled_in_the_instant_it_is_admitted_is_not_left_in_flight(make_cluster):
    # The client of a queued request goes away in the same event-loop step as its admission: the
    # handler is cancelled after the wake admitted it. It must not stay counted in flight (that
    # would hold every later drain of b for drain_timeout_seconds and keep its idle TTL off).
    # A long batch window keeps the scheduler from waking b itself; the operator's activate does,
    # and returns in the step that admits the request.
    c = await make_cluster(AB, policy={"batch_window_seconds": 30})
    b = c.manager.models["b"]
    client = asyncio.create_task(c.manager.wait_admitted(b))
    await wait_until(lambda: len(b.queue) == 1, what="the request to queue")
    assert await c.manager.activate(b) == (True, "awake")
    assert not client.done()  # admitted, not resumed yet
    client.cancel()
    with pytest.raises(asyncio.CancelledError):
        await client
    assert c.metric("k3sllm_switcher_inflight_requests", model="b") == 0
    assert c.manager.describe(b)["inflight"] == 0 and b.idle.is_set()
