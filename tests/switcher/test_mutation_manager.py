"""The manager's decisions that the rest of the suite exercised without pinning them (found by
`make mutation`): which sleep level a wake undoes, the Retry-After a refused client is given, and the
awake-by-default set."""

from __future__ import annotations

import asyncio
import math
import time

from standins.vllm_cluster import wait_until

AB = [{"name": "a"}, {"name": "b"}]


async def test_a_model_slept_at_level_2_outside_the_switcher_is_woken_with_the_level_2_sequence(make_cluster):
    # The policy says level 1, but the engine reports (vllm:engine_sleep_state) that it discarded its
    # weights: waking it with a plain /wake_up would serve garbage.
    c = await make_cluster(AB, policy={"sleep_level": 1})
    a = c.engines["a"]
    a.force_sleep(2)
    c.manager.report_engine_error(c.manager.models["a"])  # re-probe now instead of at the next poll
    await wait_until(lambda: c.state("a") == "sleeping", what="a seen sleeping")
    assert c.manager.models["a"].slept_level == 2
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    assert a.stats.wakes == ["weights", "kv_cache"] and a.stats.reloads == 1
    c.assert_gpu_safe()


async def test_a_models_own_sleep_level_wins_over_the_policy(make_cluster):
    c = await make_cluster([{"name": "a", "sleep_level": 2}, {"name": "b"}], policy={"sleep_level": 1})
    assert (await c.request("b")).model == "b"  # a is put to sleep at its own level
    assert c.engines["a"].stats.sleeps == [2]
    assert (await c.request("a")).model == "a"
    assert c.engines["a"].stats.wakes == ["weights", "kv_cache"] and c.engines["a"].stats.reloads == 1
    assert (await c.request("b")).model == "b"
    assert c.engines["b"].stats.sleeps == [1] and c.engines["b"].stats.wakes == [None, None]
    c.assert_gpu_safe()


async def test_retry_after_is_the_back_off_left_rounded_up(make_cluster):
    c = await make_cluster(
        AB, policy={"retry_backoff_initial_seconds": 3.0, "retry_backoff_max_seconds": 3.0}
    )
    c.engines["b"].faults.fail_wakes = 1
    r = await c.request("b")
    assert r.status == 503 and r.headers["Retry-After"] == "3"
    m = c.manager.models["b"]
    r = await c.request("b")  # refused during the back-off, told how long is left
    left = m.blocked_until - time.monotonic()
    assert r.status == 503 and 2 < left < 3
    assert r.headers["Retry-After"] == str(math.ceil(left)) == "3"
    c.assert_gpu_safe()


async def test_retry_after_is_at_least_one_second(make_cluster):
    c = await make_cluster(
        AB, policy={"retry_backoff_initial_seconds": 0.3, "retry_backoff_max_seconds": 0.3}
    )
    c.engines["b"].faults.fail_wakes = 1
    r = await c.request("b")
    assert r.status == 503 and r.headers["Retry-After"] == "1"


async def test_only_the_models_awake_by_default_are_woken_at_start(make_cluster):
    # Co-residency: a and c fit together (4 + 4 of 10) and are awake by default; b is not.
    models = [
        {"name": "a", "vram": 4, "awake_by_default": True},
        {"name": "b", "vram": 4},
        {"name": "c", "vram": 4, "awake_by_default": True},
    ]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, awake=())
    await wait_until(lambda: c.state("a") == c.state("c") == "awake", what="a and c woken")
    await wait_until(lambda: c.state("b") == "sleeping", what="b seen sleeping")
    # b stays asleep: nothing asked for it.
    for _ in range(10):
        assert c.state("b") == "sleeping" and c.engines["b"].state == "sleeping"
        await asyncio.sleep(0.05)
    c.assert_gpu_safe()


async def test_an_awake_by_default_model_that_does_not_fit_is_left_asleep(make_cluster):
    models = [
        {"name": "a", "vram": 6, "awake_by_default": True, "priority": 1},
        {"name": "b", "vram": 6, "awake_by_default": True},
    ]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, awake=())
    await wait_until(lambda: c.state("a") == "awake", what="a (higher priority) woken")
    for _ in range(10):
        assert c.state("b") == "sleeping"
        await asyncio.sleep(0.05)
    assert (await c.request("b")).model == "b"  # on demand it still takes the GPU
    c.assert_gpu_safe()
