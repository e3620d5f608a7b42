"""The manager's decisions that the rest of the suite exercised without pinning them (found by
`make mutation`): which sleep level a wake undoes, the Retry-After a refused client is given, and the
awake-by-default set."""

from __future__ import annotations

import asyncio
import math
import time

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

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
    assert r.body["error"]["code"] == "model_unavailable"
    m = c.manager.models["b"]
    r = await c.request("b")  # refused during the back-off, told how long is left
    left = m.blocked_until - time.monotonic()
    assert r.status == 503 and 2 < left < 3 and r.body["error"]["code"] == "model_unavailable"
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


async def test_a_failed_wake_wakes_its_victims_again_at_once(make_cluster):
    c = await make_cluster(AB)
    c.engines["b"].faults.fail_wakes = 1
    assert (await c.request("b")).status == 503
    # Rolled back by the switcher itself, before anyone asks for a again.
    await wait_until(lambda: c.state("a") == "awake", within=1, what="a woken again")
    assert c.engines["a"].state == "awake"
    assert c.engines["a"].stats.wakes == [None]
    c.assert_gpu_safe()


async def test_a_victim_that_cannot_be_woken_back_is_backed_off_too(make_cluster):
    c = await make_cluster(
        AB, policy={"retry_backoff_initial_seconds": 5.0, "retry_backoff_max_seconds": 5.0}
    )
    c.engines["b"].faults.fail_wakes = 1
    c.engines["a"].faults.fail_wakes = 1
    assert (await c.request("b")).status == 503
    a = c.manager.models["a"]
    await wait_until(lambda: c.state("a") == "failed", within=1, what="a's failed wake back")
    assert a.failures == 1 and "wake failed" in a.last_error
    r = await c.request("a")
    assert r.status == 503 and r.body["error"]["message"] == "model a is unavailable: wake failed"


async def test_failures_count_up_and_double_the_back_off(make_cluster):
    c = await make_cluster(
        AB, policy={"retry_backoff_initial_seconds": 0.2, "retry_backoff_max_seconds": 5.0}
    )
    b = c.manager.models["b"]
    c.engines["b"].faults.fail_wakes = 2
    assert (await c.request("b")).status == 503
    assert b.failures == 1 and 0.1 < b.blocked_until - time.monotonic() <= 0.2
    await wait_until(lambda: time.monotonic() >= b.blocked_until, what="the first back-off to end")
    assert (await c.request("b")).status == 503
    assert b.failures == 2 and 0.3 < b.blocked_until - time.monotonic() <= 0.4
    await wait_until(lambda: time.monotonic() >= b.blocked_until, what="the second back-off to end")
    assert (await c.request("b")).model == "b" and b.failures == 0


async def test_an_engine_error_is_probed_at_once_not_at_the_next_poll(make_cluster):
    c = await make_cluster(AB, policy={"health_interval_seconds": 30})
    await c.engines["b"].kill()
    c.manager.report_engine_error(c.manager.models["b"])
    await wait_until(lambda: c.state("b") == "cold", within=2, what="b probed after the reported error")


async def test_engines_found_awake_over_capacity_are_slept_and_logged(make_cluster, caplog):
    caplog.set_level("WARNING", logger="switcher")
    abc = [*AB, {"name": "c"}]
    c = await make_cluster(abc, awake=("a", "b", "c"), gpu_gib=30)  # the switcher plans one at a time
    states = lambda: sorted(c.state(n) for n in "abc")  # noqa: E731
    await wait_until(lambda: states() == ["awake", "sleeping", "sleeping"], what="two slept")
    victims = [n for n in "abc" if c.state(n) == "sleeping"]
    for victim in victims:
        assert c.metric("k3sllm_switcher_sleeps_total", model=victim, reason="over_capacity") == 1
    assert f"putting {victims[0]}, {victims[1]} to sleep: 3 held of 1: over capacity" in caplog.messages
    c.assert_gpu_safe()


async def test_a_failed_over_capacity_sleep_is_retried_after_the_back_off(make_cluster, caplog):
    caplog.set_level("WARNING", logger="switcher")
    c = await make_cluster(
        AB,
        awake=("a", "b"),
        gpu_gib=20,
        policy={
            "sleep_timeout_seconds": 0.2,
            "retry_backoff_initial_seconds": 1.5,
            "retry_backoff_max_seconds": 2,
        },
    )
    for engine in c.engines.values():
        engine.faults.hang_sleep = True
    await asyncio.sleep(1.0)
    failed = [m for m in caplog.messages if m.startswith("could not get within capacity: ")]
    assert len(failed) == 1, caplog.messages  # once, then it waits for the back-off
    assert "sleep failed" in failed[0]
    for engine in c.engines.values():
        engine.faults.hang_sleep = False
    await wait_until(lambda: "sleeping" in (c.state("a"), c.state("b")), within=3, what="the retry")


async def test_idle_ttl_counts_from_the_last_request_and_respects_the_residency(make_cluster):
    c = await make_cluster(
        [{"name": "a", "idle_ttl_seconds": 0.3}, {"name": "b"}],
        timings=Timings(token_s=0.1),
        policy={"min_residency_seconds": 2.0},
    )
    a = c.manager.models["a"]
    r = await c.request("a", stream=True, max_tokens=8)  # 0.8 s, longer than the TTL
    assert r.status == 200
    ended = time.monotonic()
    assert c.state("a") == "awake"  # not slept during (or right after) a request longer than its TTL
    # Idle for its TTL, but its residency (2 s from waking at start) holds it until then.
    await wait_until(lambda: c.state("a") == "sleeping", within=4, what="a slept by its idle TTL")
    slept = time.monotonic()
    assert slept - ended >= 0.3 - 0.05 and slept - a.awake_since >= 2.0 - 0.05
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="idle_ttl") == 1


async def test_idle_ttl_waits_its_time_after_the_last_request(make_cluster):
    c = await make_cluster([{"name": "a", "idle_ttl_seconds": 0.8}, {"name": "b"}])
    assert (await c.request("a")).status == 200
    ended = time.monotonic()
    await asyncio.sleep(0.5)
    assert c.state("a") == "awake"
    await wait_until(lambda: c.state("a") == "sleeping", within=3, what="a slept by its idle TTL")
    assert time.monotonic() - ended >= 0.8 - 0.05


async def test_a_full_queue_is_refused_by_name(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=1.0), policy={"queue_max_per_model": 1})
    first = asyncio.create_task(c.request("b"))
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="the first request to queue")
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["code"] == "queue_full"
    assert (
        r.body["error"]["message"] == "model b has 1 requests waiting (queue_max_per_model); try again later"
    )
    assert (await first).status == 200


async def test_a_queue_timeout_names_the_state_and_its_public_reason(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=1.0), policy={"queue_timeout_seconds": 0.3})
    r = await c.request("b")  # b was found sleeping at start: its reason says so
    assert r.status == 503 and r.body["error"]["code"] == "queue_timeout"
    assert r.body["error"]["message"] == (
        "model b did not become available within 0.3s (state sleeping: engine is up and sleeping)"
    )
    # The request that gave up leaves the queue, and its wait is measured as the 0.3 s it waited.
    assert len(c.manager.models["b"].queue) == 0 and c.metric("k3sllm_switcher_queue_depth", model="b") == 0
    assert 0.3 <= c.metric("k3sllm_switcher_queue_wait_seconds_sum", model="b") < 0.6
    await wait_until(lambda: c.state("b") == "awake", within=3, what="b's wake to finish")
    r = await c.request("a")  # a was put to sleep by the switcher: a state without a reason
    assert r.status == 503
    assert r.body["error"]["message"] == "model a did not become available within 0.3s (state sleeping)"


async def test_a_waking_model_counts_its_whole_share(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=0.5))
    waiting = asyncio.create_task(c.request("b"))
    b = c.manager.models["b"]
    # b's engine has been asked to wake (0.5 s) and b is not awake yet: its share is already counted.
    await wait_until(lambda: c.engines["b"].stats.wakes and c.state("b") == "sleeping", what="b waking")
    assert c.manager.describe(b)["vram_in_use"] == 1.0  # counted from the first byte it may allocate
    assert (await waiting).status == 200


async def test_wake_times_are_a_running_average(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=0.02))
    b = c.manager.models["b"]
    assert (await c.request("b")).status == 200
    first = b.wake_seconds
    assert (await c.request("a")).status == 200
    c.engines["b"].timings.wake_s = 0.5
    assert (await c.request("b")).status == 200
    # 30 % of the new 0.5 s sample blends into the first estimate (scheduler.COST_ALPHA).
    assert b.wake_seconds < 0.3 and b.wake_seconds > first


async def test_after_a_switch_the_next_waiting_model_is_served_at_once(make_cluster):
    # Co-residency: a, b and c fit together. c's request arrives while b is being woken; it must be
    # woken right after b, not when b's long answer ends.
    models = [{"name": n, "vram": 3} for n in "abc"]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, timings=Timings(wake_s=0.3, token_s=0.1))
    started = time.monotonic()
    long_b = asyncio.create_task(c.request("b", max_tokens=20))
    await wait_until(lambda: c.manager.switching == "b", what="b's switch to start")
    r = await c.request("c", max_tokens=1)
    c_done = time.monotonic() - started
    assert r.status == 200 and r.model == "c"
    assert (await long_b).status == 200
    b_done = time.monotonic() - started
    assert c_done < 1.2 < 2.0 <= b_done, (c_done, b_done)
    c.assert_gpu_safe()


async def test_a_model_blocked_by_a_booting_engine_waits_without_errors(make_cluster, caplog):
    # b (8 of 10) cannot fit while c's boot holds 5: the scheduler waits and looks again, cleanly.
    models = [{"name": "a", "vram": 2}, {"name": "b", "vram": 8}, {"name": "c", "vram": 5}]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, policy={"queue_timeout_seconds": 0.6})
    await c.engines["c"].kill()
    async with c.session.get(f"{c.url}/boot/c?wait=1") as resp:
        assert resp.status == 200
    caplog.set_level("ERROR", logger="switcher")
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["code"] == "queue_timeout"
    assert caplog.records == []  # no failed scheduling step


async def test_a_default_model_put_to_sleep_by_an_operator_stays_asleep(make_cluster):
    # The awake-by-default set is restored after boots, not on every scheduling step.
    models = [{"name": "a", "vram": 4, "awake_by_default": True}, {"name": "b", "vram": 4}]
    c = await make_cluster(models, coresidency=True, gpu_gib=10)
    await wait_until(lambda: c.state("a") == "awake", what="a awake")
    assert await c.manager.sleep(c.manager.models["a"]) == (True, "sleeping")
    assert (await c.request("b")).model == "b"  # scheduling steps run; a would fit beside b
    await asyncio.sleep(0.3)
    assert c.state("a") == "sleeping" and c.engines["a"].stats.wakes == []


async def test_each_switch_is_logged_with_why(make_cluster, caplog):
    caplog.set_level("DEBUG", logger="switcher")
    c = await make_cluster(AB)
    assert (await c.request("b")).model == "b"
    assert any(m.startswith("switching to b (1 waiting, ") and "switch cost" in m for m in caplog.messages)


async def test_a_wake_that_fails_half_way_puts_the_engine_back_to_sleep(make_cluster):
    # b's /wake_up works but vLLM keeps answering {"success": false} to the prefix-cache reset, so the
    # wake times out with b's engine awake. b is put back to sleep (its VRAM not counted twice), and
    # a, slept for it, is woken again.
    c = await make_cluster(
        AB,
        policy={
            "wake_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    c.engines["b"].faults.busy_prefix_resets = 1_000_000
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["message"] == "model b is unavailable: wake failed"
    b = c.manager.models["b"]
    assert c.state("b") == "failed" and c.engines["b"].state == "sleeping"
    assert (b.use, b.slept_level) == (0.0, 1)  # back to sleep at its level, holding only its residual
    assert c.engines["b"].stats.sleeps == [1]
    await wait_until(lambda: c.state("a") == "awake", what="a woken again")
    assert (await c.request("a")).model == "a"
    c.assert_gpu_safe()


async def test_a_backed_off_default_model_does_not_keep_the_next_one_asleep(make_cluster):
    # a and b are awake by default; a (higher priority) is backed off while asleep, because x would not
    # go to sleep to make room for it. When the defaults are restored (a boot grant revoked), b, which
    # fits beside x, is woken although a, ahead of it, is skipped.
    models = [
        {"name": "a", "vram": 8, "awake_by_default": True, "priority": 1},
        {"name": "b", "vram": 2, "awake_by_default": True},
        {"name": "x", "vram": 8},
        {"name": "c", "vram": 2},
    ]
    c = await make_cluster(
        models,
        coresidency=True,
        gpu_gib=10,
        residual_gib=0,
        awake=("x",),
        policy={
            "sleep_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    await wait_until(lambda: c.state("b") == "awake", what="b, a default, woken beside x")
    c.engines["x"].faults.hang_sleep = True
    r = await c.request("a")
    assert r.status == 503 and "could not make room" in r.body["error"]["message"]
    assert c.state("a") == "sleeping" and c.manager.models["a"].blocked_until > time.monotonic()
    if c.state("b") == "awake":
        assert await c.manager.sleep(c.manager.models["b"]) == (True, "sleeping")
    await c.engines["c"].kill()
    async with c.session.get(f"{c.url}/boot/c?wait=1") as resp:
        assert resp.status == 200  # room for c beside x
    assert await c.manager.revoke_boot(c.manager.models["c"]) == (True, "boot grant revoked")
    await wait_until(lambda: c.state("b") == "awake", what="b restored past the backed-off a")
    assert c.state("a") == "sleeping"
    c.assert_gpu_safe()


async def test_idle_ttl_never_fires_under_a_request_in_flight(make_cluster):
    # a's idle TTL (0.2 s) passes while its one stream runs (about 1 s): a is not drained under it.
    c = await make_cluster(
        [{"name": "a", "idle_ttl_seconds": 0.2}, {"name": "b"}],
        timings=Timings(token_s=0.05),
        policy={"min_residency_seconds": 0},
    )
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=20))
    await wait_until(lambda: c.manager.models["a"].inflight == 1, what="the stream to start")
    await asyncio.sleep(0.6)
    assert c.state("a") == "awake" and c.manager.models["a"].draining is False
    assert (await stream).finish_reason == "length"
    await wait_until(lambda: c.state("a") == "sleeping", what="the TTL after the stream")


async def test_a_wake_that_finds_the_engine_gone_counts_no_vram(make_cluster):
    # b's engine died unseen (no health poll for 30 s): its wake fails to connect, b holds nothing,
    # so a, slept for it, fits and is woken again.
    c = await make_cluster(
        AB,
        policy={
            "health_interval_seconds": 30,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    await c.engines["b"].kill()
    r = await c.request("b")
    assert r.status == 503
    assert c.state("b") == "failed" and c.manager.models["b"].use == 0.0
    await wait_until(lambda: c.state("a") == "awake", what="a woken again")
    c.assert_gpu_safe()


async def test_nothing_is_woken_beside_an_engine_whose_state_is_unknown(make_cluster):
    # b's wake fails and its engine then does not answer /is_sleeping: b may hold its whole share, so
    # a, slept for b, is not woken again on top of it (the rollback wakes only what fits).
    c = await make_cluster(
        AB,
        policy={
            "engine_probe_timeout_seconds": 0.2,
            "health_interval_seconds": 30,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    c.engines["b"].faults.fail_wakes = 1
    c.engines["b"].faults.hang_status = True
    r = await c.request("b")
    assert r.status == 503
    assert c.state("b") == "failed" and c.manager.models["b"].use == 1.0
    await asyncio.sleep(0.3)
    assert c.state("a") == "sleeping" and c.engines["a"].stats.wakes == []


async def test_a_model_whose_sleep_went_unanswered_is_woken_at_the_level_its_engine_reports(make_cluster):
    # a's /sleep and its probe time out: a is failed, its sleep level unknown to the switcher. Meanwhile
    # an operator sleeps a's engine at level 2 (weights discarded). When a is asked for after its
    # back-off, before the health poll re-learned it, the wake must read the level from the engine
    # (vllm:engine_sleep_state) and reload the weights, not use the policy's level 1.
    c = await make_cluster(
        AB,
        policy={
            "sleep_level": 1,
            "sleep_timeout_seconds": 0.3,
            "engine_probe_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 0.5,
            "retry_backoff_max_seconds": 0.5,
            "health_interval_seconds": 60.0,
        },
    )
    a = c.engines["a"]
    a.faults.hang_sleep = a.faults.hang_status = True
    r = await c.request("b")
    assert r.status == 503 and c.state("a") == "failed"
    a.faults.hang_sleep = a.faults.hang_status = False
    a.force_sleep(2)
    await wait_until(lambda: time.monotonic() >= c.manager.models["a"].blocked_until, what="a's back-off")
    assert c.state("a") == "failed"  # not re-learned by a probe: the wake has to ask the engine
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    assert a.stats.wakes == ["weights", "kv_cache"] and a.stats.reloads == 1
    assert a.stats.garbage_answers == 0
    c.assert_gpu_safe()
