"""Details of a switch that the rest of the suite did not pin (found by `make mutation`): the sleep
mode the policy asks for, a sleep answered late, and the reasons given when models cannot be put to
sleep."""

from __future__ import annotations

import asyncio

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

AB = [{"name": "a"}, {"name": "b"}]


async def test_sleep_mode_wait_lets_a_request_outliving_the_drain_finish(make_cluster):
    # policy.sleep_mode "wait": the engine finishes what it runs before it sleeps, even past the drain.
    c = await make_cluster(
        AB,
        timings=Timings(token_s=0.02),
        policy={"sleep_mode": "wait", "drain_timeout_seconds": 0.1, "sleep_timeout_seconds": 5.0},
    )
    long_a = asyncio.create_task(c.request("a", max_tokens=25))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    assert (await c.request("b")).model == "b"
    a_reply = await long_a
    assert a_reply.status == 200 and a_reply.finish_reason == "length"
    assert c.engines["a"].stats.aborted_by_sleep == 0
    c.assert_gpu_safe()


async def test_every_model_that_cannot_be_put_to_sleep_is_named(make_cluster):
    models = [{"name": "a", "vram": 4}, {"name": "b", "vram": 4}, {"name": "c", "vram": 8}]
    policy = {"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3}
    c = await make_cluster(models, coresidency=True, gpu_gib=8, awake=("a", "b"), policy=policy)
    await wait_until(lambda: c.state("a") == c.state("b") == "awake", what="a and b awake")
    for name in ("a", "b"):
        c.engines[name].faults.hang_sleep = True  # /sleep never answers; the engine stays awake
    ok, message = await c.manager.activate(c.manager.models["c"])
    assert ok is False
    assert message.startswith("activation failed: could not make room: a: sleep failed: "), message
    assert "; b: sleep failed: " in message, message
    c.assert_gpu_safe()


async def test_a_sleep_answered_late_is_taken_as_done(make_cluster):
    # The engine goes to sleep but answers /sleep after sleep_timeout_seconds: the switcher asks where
    # it stands, finds it sleeping, asks again, and counts the sleep done when that one is answered
    # within a second sleep_timeout_seconds (here an operator's sleep).
    c = await make_cluster(AB, timings=Timings(sleep_s=0.45), policy={"sleep_timeout_seconds": 0.3})
    assert await c.manager.sleep(c.manager.models["a"]) == (True, "sleeping")
    assert c.state("a") == "sleeping" and c.engines["a"].state == "sleeping"
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="admin") == 1


async def test_a_model_that_cannot_be_slept_or_asked_is_failed_with_both_reasons(make_cluster):
    policy = {"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3}
    c = await make_cluster(AB, policy=policy)
    c.engines["a"].faults.hang_sleep = c.engines["a"].faults.hang_status = True
    assert (await c.request("b")).status == 503
    url = c.manager.models["a"].engine.base_url
    described = c.manager.describe(c.manager.models["a"])
    assert described["state"] == "failed"
    assert described["reason"] == (
        f"sleep failed: POST {url}/sleep?level=1: no answer within 0.3s; "
        f"then GET {url}/is_sleeping: no answer within 0.3s"
    )


async def test_sleep_times_are_a_running_average(make_cluster):
    # The admin API reports each engine's measured sleep time, which the scheduler uses as the cost
    # of a switch: a running average, so one slow sleep does not swing it.
    c = await make_cluster(AB, timings=Timings(sleep_s=0.02))

    def measured() -> float:
        return c.manager.describe(c.manager.models["a"])["sleep_seconds_measured"]

    assert (await c.request("b")).status == 200
    first = measured()
    assert 0.02 <= first < 0.3
    assert (await c.request("a")).status == 200
    c.engines["a"].timings.sleep_s = 0.5
    assert (await c.request("b")).status == 200
    # 30 % of the new 0.5 s sample blends into the first estimate (scheduler.COST_ALPHA).
    assert first < measured() < 0.3


async def test_idle_time_counts_from_the_last_admission(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05))
    await asyncio.sleep(0.4)  # a has been awake, and idle, since the start
    long_a = asyncio.create_task(c.request("a", max_tokens=10))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    described = c.manager.describe(c.manager.models["a"])
    assert 0 <= described["idle_for_seconds"] < 0.2 and described["awake_for_seconds"] >= 0.4
    assert (await long_a).status == 200


async def test_a_model_is_woken_only_after_a_late_sleep_has_released_its_memory(make_cluster):
    # vLLM reports sleeping from the moment it pauses, before its memory is released (0.32:
    # EngineCore.is_sleeping), and the release goes on after the switcher stopped waiting for /sleep.
    # b may be woken only once a's memory is free: the stand-in GPU refuses a wake on top of a.
    c = await make_cluster(AB, timings=Timings(sleep_s=0.5), policy={"sleep_timeout_seconds": 0.3})
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert c.engines["a"].stats.sleeps == [1] and c.state("a") == "sleeping"
    assert c.manager.describe(c.manager.models["a"])["vram_in_use"] == 0.0
    c.assert_gpu_safe()


async def test_a_sleep_still_releasing_after_two_timeouts_keeps_its_vram_counted(make_cluster):
    policy = {
        "sleep_timeout_seconds": 0.3,
        "retry_backoff_initial_seconds": 5.0,
        "retry_backoff_max_seconds": 5.0,
    }
    c = await make_cluster(AB, timings=Timings(sleep_s=1.5), policy=policy)
    r = await c.request("b")
    assert r.status == 503 and "could not make room" in r.body["error"]["message"]
    a = c.manager.describe(c.manager.models["a"])
    assert a["state"] == "failed" and a["vram_in_use"] == 1.0  # a still holds its memory
    assert c.engines["b"].stats.wakes == []  # nothing woken on top of it
    c.assert_gpu_safe()


async def test_a_failed_model_whose_engine_is_still_releasing_is_counted_until_it_reports_its_level(
    make_cluster,
):
    # a's sleep outlasts both waits and a is failed; when its back-off ends, the health poll finds it
    # sleeping, but vLLM reports its sleep level only once the memory is released: b must wait for that.
    c = await make_cluster(AB, timings=Timings(sleep_s=1.5), policy={"sleep_timeout_seconds": 0.3})
    started = asyncio.get_running_loop().time()
    assert (await c.request("b")).status == 503
    assert c.state("a") == "failed"
    await asyncio.sleep(0.3)  # past b's back-off; a's (0.2 s) is over too
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert asyncio.get_running_loop().time() - started >= 1.5  # not before a's memory was free
    assert c.manager.describe(c.manager.models["a"])["vram_in_use"] == 0.0 and c.state("a") == "sleeping"
    c.assert_gpu_safe()
