"""Failures: a wake that errors, a sleep that hangs, an engine that dies or restarts."""

from __future__ import annotations

import time

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

AB = [{"name": "a"}, {"name": "b"}]


async def test_failed_wake_answers_503_and_keeps_the_previous_model(make_cluster):
    c = await make_cluster(AB)
    c.engines["b"].faults.fail_wakes = 1
    started = time.monotonic()
    r = await c.request("b")
    assert r.status == 503 and time.monotonic() - started < 2
    assert int(r.headers["Retry-After"]) >= 1
    # Clients learn what failed; the engine's URL and answer stay with the operator (log, admin API).
    assert r.body["error"]["message"] == "model b is unavailable: wake failed"
    assert c.state("b") == "failed" and "wake failed" in c.manager.models["b"].reason
    assert "injected wake failure" in c.manager.describe(c.manager.models["b"])["last_error"]
    assert c.metric("k3sllm_switcher_switches_total", model="b", outcome="failed") == 1
    # The model that was put to sleep for b is woken again (rollback) and serves.
    assert (await c.request("a")).model == "a"
    assert c.state("a") == "awake" and c.engines["a"].stats.wakes == [None]
    # During the back-off b is refused quickly; after it, b is retried and works.
    assert (await c.request("b")).status == 503
    await wait_until(
        lambda: time.monotonic() >= c.manager.models["b"].blocked_until, what="the back-off to end"
    )
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert c.manager.models["b"].failures == 0
    c.assert_gpu_safe()


async def test_wake_refused_by_a_full_gpu_is_a_clean_failure(make_cluster):
    # The switcher believes one model fits at a time, but something else holds VRAM on the GPU.
    c = await make_cluster([{"name": "a", "vram": 5}, {"name": "b", "vram": 10}], gpu_gib=10)
    c.ledger.book("someone-else", 4)
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["message"] == "model b is unavailable: wake failed"
    assert "CUDA out of memory" in c.manager.models["b"].last_error
    assert (await c.request("a")).status == 200 and c.state("a") == "awake"
    assert len(c.ledger.refusals) == 1  # the one refused wake; never an actual over-commit
    assert c.ledger.max_committed <= c.ledger.capacity


async def test_sleep_that_hangs_fails_the_switch_and_keeps_serving(make_cluster):
    c = await make_cluster(AB, policy={"sleep_timeout_seconds": 0.3})
    c.engines["a"].faults.hang_sleep = True
    started = time.monotonic()
    r = await c.request("b")
    assert r.status == 503 and time.monotonic() - started < 2
    assert r.body["error"]["message"] == "model b is unavailable: could not make room"
    assert "http://" not in r.body["error"]["message"]
    assert "sleep failed" in c.manager.models["b"].last_error
    assert c.state("a") == "awake" and (await c.request("a")).model == "a"
    assert c.state("b") == "sleeping"
    c.assert_gpu_safe()


async def test_engine_dying_mid_stream_ends_the_stream_and_is_relearned(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.01))
    a = c.engines["a"]
    a.faults.die_after_tokens = 2
    a.faults.restart_after_s = 0.3
    r = await c.request("a", stream=True, max_tokens=20)
    assert r.status == 200
    assert r.chunks[-1].get("error", {}).get("code") == "engine_error"  # told in-band, then closed
    await wait_until(lambda: c.state("a") == "cold", what="the switcher to notice the dead engine")
    await wait_until(lambda: c.state("a") == "awake", what="the restarted engine to be learned")
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    c.assert_gpu_safe()


async def test_requests_for_a_restarting_engine_wait_for_it(make_cluster):
    c = await make_cluster(AB)
    await c.engines["a"].kill()
    r = await c.request("a")  # the connection is refused: clear 503, and a re-probe is triggered
    assert r.status == 503 and r.body["error"]["code"] == "engine_unreachable"
    await wait_until(lambda: c.state("a") == "cold")
    await c.engines["a"].start()
    r = await c.request("a")  # queued while cold, served once the health poll sees it awake
    assert r.status == 200 and r.model == "a"


async def test_engine_slept_behind_our_back_is_noticed(make_cluster):
    c = await make_cluster(AB)
    async with c.session.post(c.engines["a"].base_url + "/sleep?level=1") as resp:
        assert resp.status == 200
    await wait_until(lambda: c.state("a") == "sleeping", what="the health poll to learn a is asleep")
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    c.assert_gpu_safe()


async def test_wedged_engine_is_failed_then_relearned_after_its_back_off(make_cluster):
    c = await make_cluster(AB, policy={"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3})
    a = c.engines["a"]
    a.faults.hang_sleep = a.faults.hang_status = True
    r = await c.request("b")
    assert r.status == 503 and "could not make room" in r.body["error"]["message"]
    # a could not be asked where it stands: failed, and assumed to still hold its VRAM
    assert c.state("a") == "failed" and c.manager.models["a"].use == c.manager.models["a"].share
    assert (await c.request("a")).status == 503  # refused during its back-off, not sent to a wedged engine
    a.faults.hang_sleep = a.faults.hang_status = False  # the engine recovers
    await wait_until(lambda: c.state("a") == "awake", what="the health poll to re-learn a after its back-off")
    assert (await c.request("a")).model == "a"
    await wait_until(lambda: time.monotonic() >= c.manager.models["b"].blocked_until)
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    c.assert_gpu_safe()


async def test_prefix_cache_reset_that_reports_no_success_is_retried(make_cluster):
    c = await make_cluster(AB)
    c.engines["b"].faults.busy_prefix_resets = 2  # vLLM 0.32: HTTP 200 {"success": false}
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert c.engines["b"].stats.prefix_resets == 3
    c.assert_gpu_safe()  # no answer from a stale prefix cache
