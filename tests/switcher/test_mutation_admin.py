"""Operator operations answered exactly (found by `make mutation`): what describe() reports, and
the answers of activate, sleep, drain and revoke_boot in each of their cases."""

from __future__ import annotations

import asyncio
import time

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings
from switcher import manager as manager_module

AB = [{"name": "a"}, {"name": "b"}]


def describe_at(c, name: str, now: float) -> dict:
    """describe() as of ``now`` on the monotonic clock (patched for this synchronous call only)."""
    real = manager_module.time.monotonic
    manager_module.time.monotonic = lambda: now
    try:
        return c.manager.describe(c.manager.models[name])
    finally:
        manager_module.time.monotonic = real


async def test_describe_reports_every_field(make_cluster):
    models = [{"name": "a", "served_name": "engine-a", "aliases": ["x", "y"], "priority": 3}, {"name": "b"}]
    c = await make_cluster(models)
    a = c.manager.models["a"]
    a.last_used = a.awake_since + 0.5
    assert describe_at(c, "a", a.awake_since + 1.23456) == {
        "name": "a",
        "served_name": "engine-a",
        "aliases": ["x", "y"],
        "state": "awake",
        "reason": "engine is up and awake",
        "inflight": 0,
        "queued": 0,
        "draining": False,
        "cordoned": False,
        "awake_for_seconds": 1.235,
        "idle_for_seconds": 0.735,
        "vram_in_use": 1.0,
        "vram_when_awake": 1.0,
        "sleep_seconds_measured": None,
        "wake_seconds_measured": None,
        "priority": 3,
        "failures": 0,
        "retry_in_seconds": None,
        "last_error": None,
    }
    assert (await c.request("b")).model == "b"  # a is measured going to sleep, b waking
    a.sleep_seconds, c.manager.models["b"].wake_seconds = 0.0123456, 0.0456789
    asleep = describe_at(c, "a", time.monotonic())
    assert asleep["state"] == "sleeping" and asleep["awake_for_seconds"] is None
    assert asleep["vram_in_use"] == 0.0 and asleep["vram_when_awake"] == 1.0
    assert asleep["sleep_seconds_measured"] == 0.012
    assert describe_at(c, "b", time.monotonic())["wake_seconds_measured"] == 0.046
    a.last_used = 0.0
    assert describe_at(c, "a", time.monotonic())["idle_for_seconds"] is None  # never used


async def test_describe_reports_the_back_off_left(make_cluster):
    c = await make_cluster(
        AB, policy={"retry_backoff_initial_seconds": 5.0, "retry_backoff_max_seconds": 5.0}
    )
    c.engines["b"].faults.fail_wakes = 1
    assert (await c.request("b")).status == 503
    b = c.manager.models["b"]
    described = describe_at(c, "b", b.blocked_until - 2.45649)
    assert described["retry_in_seconds"] == 2.456 and described["failures"] == 1
    assert described["state"] == "failed" and "injected wake failure" in described["last_error"]
    assert describe_at(c, "b", b.blocked_until)["retry_in_seconds"] is None  # over at that instant


async def test_activate_answers(make_cluster):
    c = await make_cluster([*AB, {"name": "c"}])
    a, b, cm = (c.manager.models[n] for n in "abc")
    assert await c.manager.activate(a) == (True, "already awake")
    await c.engines["c"].kill()
    c.manager.report_engine_error(cm)
    await wait_until(lambda: c.state("c") == "cold", what="c seen gone")
    assert await c.manager.activate(cm) == (False, "cannot wake a model in state cold: its engine is not up")
    assert await c.manager.activate(b) == (True, "awake")
    assert (c.state("a"), c.state("b")) == ("sleeping", "awake")
    c.engines["a"].faults.fail_wakes = 1
    ok, message = await c.manager.activate(a)
    assert not ok and message.startswith("activation failed: wake failed: ")
    assert "injected wake failure" in message
    c.assert_gpu_safe()


async def test_activate_refuses_what_cannot_fit(make_cluster):
    # b (8 of 10) cannot wake while a booting engine c holds 5: nothing awake can make room for it.
    models = [{"name": "a", "vram": 2}, {"name": "b", "vram": 8}, {"name": "c", "vram": 5}]
    c = await make_cluster(models, coresidency=True, gpu_gib=10)
    await c.engines["c"].kill()
    async with c.session.get(f"{c.url}/boot/c?wait=1") as resp:
        assert resp.status == 200
    ok, message = await c.manager.activate(c.manager.models["b"])
    assert not ok and message.startswith("b needs 8 more but only 3 is free")
    assert c.state("b") == "sleeping"


async def test_sleep_answers(make_cluster):
    c = await make_cluster([*AB, {"name": "c"}])
    a, b, cm = (c.manager.models[n] for n in "abc")
    assert await c.manager.sleep(b) == (True, "already sleeping")
    assert await c.manager.sleep(a) == (True, "sleeping")
    assert c.state("a") == "sleeping" and c.engines["a"].state == "sleeping"
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="admin") == 1
    await c.engines["c"].kill()
    c.manager.report_engine_error(cm)
    await wait_until(lambda: c.state("c") == "cold", what="c seen gone")
    assert await c.manager.sleep(cm) == (False, "cannot sleep a model in state cold")


async def test_drain_reports_what_is_still_in_flight(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05), policy={"retry_after_seconds": 7})
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=20))
    await wait_until(lambda: c.manager.models["a"].inflight == 1, what="the stream to start")
    assert await c.manager.drain(c.manager.models["a"], 0.05) == {
        "model": "a",
        "drained": False,
        "inflight": 1,
    }
    r = await c.request("a")
    assert r.status == 503 and r.headers["Retry-After"] == "7"
    assert r.body["error"]["message"] == "model a is drained by an operator; activate it to serve again"
    assert (await stream).status == 200  # the stream in flight is not cut
    assert await c.manager.drain(c.manager.models["a"], 1) == {"model": "a", "drained": True, "inflight": 0}


async def test_revoke_boot_answers_each_case(make_cluster):
    c = await make_cluster([*AB, {"name": "c"}])
    await c.engines["b"].kill()
    await c.engines["c"].kill()
    async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
        assert resp.status == 423  # in line; a holds the GPU
    wanted = asyncio.create_task(c.manager.wait_admitted(c.manager.models["b"]))  # b is wanted
    async with c.session.get(f"{c.url}/boot/b?wait=1") as resp:
        assert resp.status == 200  # b holds the grant
    wanted.cancel()
    waiting = asyncio.create_task(c.session.get(f"{c.url}/boot/c?wait=2"))  # c waits in line
    await wait_until(lambda: c.manager.boot_queue == ["c"], what="c queued")
    b, cm = c.manager.models["b"], c.manager.models["c"]
    # c is taken out of the line, and its long poll answers at once (not after 2 s): not granted.
    started = time.monotonic()
    assert await c.manager.revoke_boot(cm) == (True, "removed from the boot queue")
    async with await waiting as resp:
        assert resp.status == 423 and (await resp.json())["granted"] is False
    assert time.monotonic() - started < 1.5 and c.manager.boot_queue == []
    assert c.state("c") == "cold"
    assert await c.manager.revoke_boot(b) == (True, "boot grant revoked")
    assert c.manager.grant is None and c.state("b") == "cold"
    assert b.reason == "boot grant revoked by an operator" and b.use == 0.0
    assert await c.manager.revoke_boot(b) == (False, "holds no boot grant and is not waiting for one")
    # With the grant gone, the awake-by-default set is restored and a serves again.
    assert (await c.request("a")).model == "a"


async def test_requests_during_an_admin_sleep_wait_and_are_served_after_a_wake(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05), admin_token="t")
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=10))
    await wait_until(lambda: c.manager.models["a"].inflight == 1, what="the stream to start")
    sleeping = asyncio.create_task(c.manager.sleep(c.manager.models["a"]))
    await wait_until(lambda: c.manager.models["a"].draining, what="a draining")
    late = asyncio.create_task(c.request("a"))  # held while a drains and sleeps
    assert await sleeping == (True, "sleeping")
    assert (await stream).status == 200
    r = await late
    assert r.status == 200 and r.model == "a"
    assert c.engines["a"].stats.sleeps == [1] and c.engines["a"].stats.wakes == [None]  # woken for it
    c.assert_gpu_safe()  # nothing reached a while it slept


async def test_a_failed_admin_sleep_keeps_serving(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05), policy={"sleep_timeout_seconds": 0.3})
    a = c.manager.models["a"]
    c.engines["a"].faults.hang_sleep = True
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=4))
    await wait_until(lambda: a.inflight == 1, what="the stream to start")
    sleeping = asyncio.create_task(c.manager.sleep(a))
    await wait_until(lambda: a.draining, what="a draining")
    late = asyncio.create_task(c.request("a"))
    ok, message = await sleeping
    assert not ok and message.startswith("sleep failed")
    assert c.state("a") == "awake" and a.draining is False
    assert c.manager.describe(a)["draining"] is False
    assert (await stream).status == 200 and (await late).status == 200  # the waiter is released
    assert (await c.request("a")).model == "a"


async def test_a_boot_grant_that_times_out_holds_no_vram(make_cluster):
    models = [{"name": "a", "vram": 6}, {"name": "b", "vram": 6}]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, policy={"boot_grant_timeout_seconds": 0.3})
    await c.engines["b"].kill()
    async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
        assert resp.status == 423  # in line; a holds the GPU
    wanted = asyncio.create_task(c.request("b"))  # waits for b's boot
    async with c.session.get(f"{c.url}/boot/b?wait=1") as resp:
        assert resp.status == 200  # a (idle) was put to sleep for b's boot
    await wait_until(lambda: c.state("b") == "failed", within=3, what="the grant to time out")
    assert (await wanted).status == 503  # refused when b's boot failed
    assert c.manager.models["b"].use == 0.0
    r = await c.request("a")  # b's engine never came: its 6 GiB are not counted, a fits again
    assert r.status == 200 and r.model == "a"
    c.assert_gpu_safe()


async def test_drain_refuses_the_requests_already_waiting(make_cluster):
    c = await make_cluster(AB, timings=Timings(wake_s=1.0), policy={"retry_after_seconds": 7})
    waiting = asyncio.create_task(c.request("b"))  # waits for b's slow wake
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="the request to queue")
    await c.manager.drain(c.manager.models["b"], 0)
    r = await waiting
    assert r.status == 503 and r.headers["Retry-After"] == "7"
    assert r.body["error"]["message"] == "model b is drained by an operator"
    assert (await c.manager.activate(c.manager.models["b"]))[0] is True
    assert c.manager.describe(c.manager.models["b"])["cordoned"] is False


async def test_a_revoked_grant_restores_the_default_model_and_relearns_the_engine(make_cluster):
    c = await make_cluster(
        [{"name": "a", "awake_by_default": True}, {"name": "b"}], policy={"health_interval_seconds": 30}
    )
    await c.engines["b"].kill()
    async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
        assert resp.status == 423  # in line; a holds the GPU
    wanted = asyncio.create_task(c.manager.wait_admitted(c.manager.models["b"]))  # b is wanted
    async with c.session.get(f"{c.url}/boot/b?wait=1") as resp:
        assert resp.status == 200  # a (idle) was put to sleep for b's boot
    wanted.cancel()
    assert c.state("a") == "sleeping"
    await c.engines["b"].start(asleep=True)  # the engine came up after all, unseen (no poll for 30 s)
    assert await c.manager.revoke_boot(c.manager.models["b"]) == (True, "boot grant revoked")
    # b is probed at once and found sleeping; a, awake by default, is woken without being asked for.
    await wait_until(lambda: c.state("b") == "sleeping", within=2, what="b re-learned")
    await wait_until(lambda: c.state("a") == "awake", within=2, what="a restored")
    assert c.engines["a"].stats.wakes == [None]
    c.assert_gpu_safe()
