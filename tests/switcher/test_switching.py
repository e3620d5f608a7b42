"""The state machine and its policies against stand-in engines sharing one simulated GPU."""

from __future__ import annotations

import asyncio
import time

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

AB = [{"name": "a"}, {"name": "b"}]


async def test_request_for_sleeping_model_switches(make_cluster):
    c = await make_cluster(AB)
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert (c.state("a"), c.state("b")) == ("sleeping", "awake")
    a, b = c.engines["a"], c.engines["b"]
    assert a.stats.sleeps == [1]
    assert b.stats.wakes == [None] and b.stats.prefix_resets == 1
    assert c.metric("k3sllm_switcher_switches_total", model="b", outcome="success") == 1
    assert c.metric("k3sllm_switcher_model_state", model="b", state="awake") == 1
    assert c.metric("k3sllm_switcher_model_state", model="a", state="awake") == 0
    assert c.metric("k3sllm_switcher_switch_duration_seconds_count", phase="total") == 1
    assert c.metric("k3sllm_switcher_switch_duration_seconds_count", phase="sleep") == 1
    assert c.metric("k3sllm_switcher_queue_wait_seconds_count", model="b") == 1
    c.assert_gpu_safe()


async def test_level_2_sleep_reloads_weights_before_serving(make_cluster):
    c = await make_cluster(AB, policy={"sleep_level": 2})
    assert (await c.request("b")).status == 200
    assert (await c.request("a")).status == 200  # a was slept at level 2 by the switcher
    a = c.engines["a"]
    assert a.stats.sleeps == [2]
    assert a.stats.wakes == ["weights", "kv_cache"] and a.stats.reloads == 1
    c.assert_gpu_safe()  # includes: no answer with garbage (unreloaded) weights


async def test_queued_requests_go_together_in_one_switch(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=0.2))
    replies = await asyncio.gather(*(c.request("b") for _ in range(12)))
    assert [r.status for r in replies] == [200] * 12
    assert {r.model for r in replies} == {"b"}
    assert c.metric("k3sllm_switcher_switches_total", model="b", outcome="success") == 1
    assert c.engines["b"].stats.wakes == [None]
    c.assert_gpu_safe()


async def test_drain_waits_for_in_flight_requests(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.03))
    long_a = asyncio.create_task(c.request("a", max_tokens=10))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    r = await c.request("b")
    a_reply = await long_a
    assert r.status == 200 and r.model == "b"
    assert a_reply.status == 200 and a_reply.finish_reason == "length"  # finished, not cut by the sleep
    assert c.engines["a"].stats.aborted_by_sleep == 0
    assert c.metric("k3sllm_switcher_drain_timeouts_total", model="a") == 0
    c.assert_gpu_safe()


async def test_drain_timeout_proceeds_and_is_counted(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05), policy={"drain_timeout_seconds": 0.1})
    long_a = asyncio.create_task(c.request("a", max_tokens=100))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    started = time.monotonic()
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert time.monotonic() - started < 2.0  # 100 tokens would take 5 s: the drain did not wait for it
    a_reply = await long_a
    assert a_reply.finish_reason == "abort"  # vLLM's default sleep mode aborts what is still running
    assert c.metric("k3sllm_switcher_drain_timeouts_total", model="a") == 1
    c.assert_gpu_safe()


async def test_idle_model_is_evicted_at_once_despite_its_residency(make_cluster):
    # One user alternating between two models: b has nothing in flight, queued or recent when the
    # request for a comes, so the residency does not hold it (it used to: 30 s here, a queue timeout).
    c = await make_cluster(AB, policy={"min_residency_seconds": 30, "demand_grace_seconds": 0})
    assert (await c.request("b")).status == 200
    started = time.monotonic()
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    assert time.monotonic() - started < 2.0
    assert (c.state("a"), c.state("b")) == ("awake", "sleeping")
    c.assert_gpu_safe()


async def test_residency_protects_a_model_only_while_it_has_demand(make_cluster):
    # b serves one 0.3 s request; a asks meanwhile. b's 0.8 s residency protects it while the request
    # runs, and no longer: a takes the GPU when b's request ends, not when the residency ends.
    c = await make_cluster(
        AB, timings=Timings(token_s=0.03), policy={"min_residency_seconds": 0.8, "demand_grace_seconds": 0}
    )
    assert (await c.request("b", max_tokens=1)).status == 200
    woke_b = c.manager.models["b"].awake_since
    long_b = asyncio.create_task(c.request("b", max_tokens=10))
    await wait_until(lambda: c.manager.models["b"].inflight == 1)
    r = await c.request("a")
    assert r.status == 200 and (await long_b).finish_reason == "length"
    gap = c.manager.models["a"].awake_since - woke_b
    assert 0.3 <= gap < 0.8, gap


async def test_residency_holds_a_busy_model_for_its_slice(make_cluster):
    # b is kept busy by a client that never stops: a waits until b's residency (0.6 s) is over.
    c = await make_cluster(AB, timings=Timings(token_s=0.01), policy={"min_residency_seconds": 0.6})
    assert (await c.request("b")).status == 200
    woke_b = c.manager.models["b"].awake_since
    stop = asyncio.Event()

    async def busy_b() -> None:
        while not stop.is_set():
            await c.request("b")

    clients = [asyncio.create_task(busy_b()) for _ in range(2)]
    await wait_until(lambda: c.manager.models["b"].inflight > 0)
    r = await c.request("a")
    stop.set()
    await asyncio.gather(*clients)
    assert r.status == 200 and r.model == "a"
    assert c.manager.models["a"].awake_since - woke_b >= 0.6
    c.assert_gpu_safe()


async def test_grace_keeps_a_model_whose_client_comes_straight_back(make_cluster):
    # One client sends b requests back to back (nothing in flight between two of them); a waits
    # for b's slice instead of taking the GPU in the gap, which would thrash with every request.
    c = await make_cluster(AB, policy={"min_residency_seconds": 0.5, "demand_grace_seconds": 0.2})
    assert (await c.request("b")).status == 200
    woke_b = c.manager.models["b"].awake_since
    stop = asyncio.Event()

    async def sequential_b() -> None:
        while not stop.is_set():
            await c.request("b")

    client = asyncio.create_task(sequential_b())
    r = await c.request("a")
    stop.set()
    await client
    assert r.status == 200
    assert c.manager.models["a"].awake_since - woke_b >= 0.5
    assert c.metric("k3sllm_switcher_switches_total", model="a", outcome="success") == 1


async def test_engines_found_awake_beyond_capacity_are_put_to_sleep_at_once(make_cluster):
    # Both engines are up and awake when the switcher starts, but it may keep one awake at a time.
    c = await make_cluster(AB, awake=("a", "b"), gpu_gib=20, policy={"min_residency_seconds": 60})
    await wait_until(lambda: [c.state("a"), c.state("b")].count("awake") == 1, what="one awake model")
    slept = [n for n in ("a", "b") if c.state(n) == "sleeping"]
    assert len(slept) == 1
    assert c.metric("k3sllm_switcher_sleeps_total", model=slept[0], reason="over_capacity") == 1
    assert (await c.request("a")).status == 200
    c.assert_gpu_safe()


async def test_sleep_and_wake_times_are_measured_per_engine(make_cluster):
    c = await make_cluster(
        AB, timings=Timings(sleep_s=0.15, wake_s=0.3), policy={"demand_grace_seconds": 0}, admin_token="t"
    )
    assert (await c.request("b")).status == 200
    assert (await c.request("a")).status == 200
    a, b = c.manager.models["a"], c.manager.models["b"]
    assert 0.15 <= a.sleep_seconds < 0.6 and 0.3 <= a.wake_seconds < 0.8
    assert b.sleep_seconds is not None and 0.3 <= b.wake_seconds < 0.8
    status, body = await c.admin("GET", "/admin/models", "t")
    shown = {m["name"]: (m["sleep_seconds_measured"], m["wake_seconds_measured"]) for m in body["models"]}
    assert status == 200 and shown["a"] == (round(a.sleep_seconds, 3), round(a.wake_seconds, 3))


async def test_anti_thrash_bounds_switches_under_alternating_load(make_cluster):
    residency = 0.3
    c = await make_cluster(AB, policy={"min_residency_seconds": residency})
    stop = time.monotonic() + 1.5
    failures = []

    async def client(model: str) -> None:
        while time.monotonic() < stop:
            r = await c.request(model)
            if r.status != 200 or r.model != model:
                failures.append((model, r.status, r.body))

    await asyncio.gather(*(client(m) for m in ("a", "b") for _ in range(3)))
    switches = sum(c.metric("k3sllm_switcher_switches_total", model=m, outcome="success") for m in ("a", "b"))
    assert failures == []
    assert 2 <= switches <= 1.5 / residency + 2, switches
    c.assert_gpu_safe()


async def test_idle_ttl_puts_a_model_to_sleep(make_cluster):
    c = await make_cluster([{"name": "a", "idle_ttl_seconds": 0.3}, {"name": "b"}])
    assert (await c.request("a")).status == 200
    await wait_until(lambda: c.state("a") == "sleeping", what="a to be slept after its idle TTL")
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="idle_ttl") == 1
    assert (await c.request("a")).status == 200  # and it wakes again on demand
    c.assert_gpu_safe()


async def test_coresidency_keeps_models_that_fit_awake(make_cluster):
    models = [{"name": "a", "vram": 15}, {"name": "b", "vram": 15}, {"name": "c", "vram": 15}]
    c = await make_cluster(models, coresidency=True, gpu_gib=40, residual_gib=1, awake=("a",))
    assert (await c.request("b")).status == 200
    assert (c.state("a"), c.state("b")) == ("awake", "awake")  # 30 + 1 of 40: both fit
    assert c.engines["a"].stats.sleeps == []
    assert (await c.request("a")).status == 200  # a is now the most recently used
    assert (await c.request("c")).status == 200
    assert (c.state("a"), c.state("b"), c.state("c")) == ("awake", "sleeping", "awake")
    c.assert_gpu_safe()


async def test_priority_decides_who_is_evicted(make_cluster):
    models = [{"name": "a", "vram": 15, "priority": 10}, {"name": "b", "vram": 15}, {"name": "c", "vram": 15}]
    c = await make_cluster(
        models,
        coresidency=True,
        gpu_gib=40,
        residual_gib=1,
        awake=("a", "b"),
        policy={"demand_grace_seconds": 0},  # neither has demand: priority decides
    )
    assert (await c.request("b")).status == 200  # b is the most recently used, but a has priority
    assert (await c.request("c")).status == 200
    assert (c.state("a"), c.state("b"), c.state("c")) == ("awake", "sleeping", "awake")
    c.assert_gpu_safe()


async def test_queue_full_answers_503_with_retry_after(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=0.4), policy={"queue_max_per_model": 2})
    replies = await asyncio.gather(*(c.request("b") for _ in range(5)))
    codes = sorted(r.status for r in replies)
    assert codes == [200, 200, 503, 503, 503]
    refused = [r for r in replies if r.status == 503]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert all(r.body["error"]["code"] == "queue_full" for r in refused)
    assert c.metric("k3sllm_switcher_queue_rejected_total", model="b") == 3
    assert c.metric("k3sllm_switcher_requests_total", model="b", code="503") == 3


async def test_queue_timeout_answers_503_instead_of_hanging(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=1.0), policy={"queue_timeout_seconds": 0.2})
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["code"] == "queue_timeout"
    assert "Retry-After" in r.headers


async def test_batch_window_lets_the_higher_priority_model_go_first(make_cluster):
    models = [{"name": "a"}, {"name": "b"}, {"name": "c", "priority": 5}]
    c = await make_cluster(models, policy={"batch_window_seconds": 0.3})
    first = asyncio.create_task(c.request("b"))  # b asks first...
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1)
    second = asyncio.create_task(c.request("c"))  # ...c, with priority, asks within the window
    rb, rc = await first, await second
    assert (rb.model, rc.model) == ("b", "c")
    assert c.manager.models["c"].awake_since < c.manager.models["b"].awake_since
    c.assert_gpu_safe()


async def test_a_failed_over_capacity_sleep_keeps_serving_and_is_retried(make_cluster):
    c = await make_cluster(AB, start_engines=False, gpu_gib=20, policy={"sleep_timeout_seconds": 0.3})
    for engine in c.engines.values():
        engine.faults.hang_sleep = True
        await engine.start()  # both come up awake behind the switcher's back
    models = c.manager.models.values()
    await wait_until(lambda: any(m.last_error for m in models), what="a sleep to fail")
    assert [c.state("a"), c.state("b")] == ["awake", "awake"]  # the engine is still awake: it keeps serving
    assert (await c.request("a")).status == 200 and (await c.request("b")).status == 200
    for engine in c.engines.values():
        engine.faults.hang_sleep = False
    await wait_until(
        lambda: sorted([c.state("a"), c.state("b")]) == ["awake", "sleeping"], what="a retried sleep"
    )
    slept = "a" if c.state("a") == "sleeping" else "b"
    assert c.metric("k3sllm_switcher_sleeps_total", model=slept, reason="over_capacity") == 1
    c.assert_gpu_safe()
