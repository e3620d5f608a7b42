"""Boot grants, as the init containers, the requests and the operator see them: the behaviour that
the mutants of switcher/boot.py showed no other test pinned (tests/switcher/mutation-equivalents.md)."""

from __future__ import annotations

import asyncio
import logging
import time

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

TOKEN = "t0k3n"


async def ask_boot(c, name: str, wait: float = 0) -> tuple[int, dict]:
    async with c.session.get(f"{c.url}/boot/{name}?wait={wait:g}") as resp:
        return resp.status, await resp.json()


async def init_container_then_start(c, name: str) -> None:
    """What a vLLM pod does: its init container long-polls for a grant, then the engine starts."""
    while (await ask_boot(c, name, wait=1))[0] != 200:
        pass
    await c.engines[name].start()


async def described(c, name: str) -> dict:
    """The model as GET /admin/models shows it."""
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200, body
    return next(m for m in body["models"] if m["name"] == name)


async def boot_line(c) -> dict:
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200, body
    return body["boot"]


def debug_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.DEBUG]


def boot_sleeps(c, name: str) -> float:
    return c.metric("k3sllm_switcher_sleeps_total", model=name, reason="boot")


# ------------------------------------------------------------------ GET /boot's answers


async def test_a_live_engine_asking_for_a_grant_gets_the_documented_answer(make_cluster):
    c = await make_cluster([{"name": "a"}, {"name": "b"}], awake=("a",))
    status, body = await ask_boot(c, "b")  # b's engine sleeps, and answers
    assert status == 423
    assert body == {
        "model": "b",
        "granted": False,
        "holder": None,
        "position": None,
        "queue": [],
        "reason": "the engine is answering: not restarting",
    }


async def test_the_holder_asking_again_keeps_its_grant_while_its_engine_comes_up(make_cluster):
    # An init container that asks again (its first answer was lost) after its engine began to answer,
    # but before the switcher has seen it ready (its /is_sleeping does not answer yet).
    c = await make_cluster([{"name": "a"}, {"name": "b"}], start_engines=False, admin_token=TOKEN)
    assert (await ask_boot(c, "a"))[0] == 200
    c.engines["a"].faults.hang_status = True
    await c.engines["a"].start()
    status, body = await ask_boot(c, "a")
    assert status == 200 and body["granted"] is True and body["holder"] == "a"
    a = await described(c, "a")
    assert (a["state"], a["reason"]) == ("starting", "boot granted; waiting for the engine to become ready")
    c.engines["a"].faults.hang_status = False
    await wait_until(lambda: c.manager.grant is None, what="a's boot to end")
    assert (await described(c, "a"))["state"] == "sleeping"
    assert c.metric("k3sllm_switcher_boot_grants_total", model="a") == 1


async def test_two_calls_at_once_put_a_model_in_line_once(make_cluster):
    c = await make_cluster([{"name": "a"}, {"name": "b"}], start_engines=False, admin_token=TOKEN)
    assert (await ask_boot(c, "a"))[0] == 200  # a holds the grant; its engine is slow to come
    # Two init containers of b ask in the same instant (called directly: over HTTP the two calls
    # would overlap only by chance): both are in flight before either is in line.
    answers = await asyncio.gather(c.manager.request_boot("b", 0), c.manager.request_boot("b", 0))
    for granted, body in answers:
        assert not granted and body["queue"] == ["b"] and body["position"] == 1
    assert await boot_line(c) == {"holder": "a", "queue": ["b"]}
    status, _ = await c.admin("DELETE", "/admin/boot/a", TOKEN)
    assert status == 200
    await wait_until(lambda: c.manager.grant == "b", what="the grant to pass to b")
    assert await boot_line(c) == {"holder": "b", "queue": []}
    await c.engines["b"].start()
    await wait_until(lambda: c.manager.grant is None, what="b's boot to end")
    assert await boot_line(c) == {"holder": None, "queue": []}
    assert c.metric("k3sllm_switcher_boot_grants_total", model="b") == 1
    assert c.engines["b"].stats.sleeps == [1]  # booted once, then put to sleep once


async def test_a_pod_that_restarts_unseen_is_cold_and_says_why(make_cluster):
    # No health poll runs during the test: the switcher learns of b's restart from its init container.
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        awake=("a",),
        admin_token=TOKEN,
        policy={"health_interval_seconds": 60},
    )
    assert (await described(c, "b"))["state"] == "sleeping"
    await c.engines["b"].kill()
    status, body = await ask_boot(c, "b")
    assert status == 423 and body["queue"] == ["b"]
    b = await described(c, "b")
    assert (b["state"], b["reason"], b["vram_in_use"]) == (
        "cold",
        "engine is (re)starting: asked for a boot grant",
        0.0,
    )


# ------------------------------------------------------------------ an engine that becomes ready


async def test_a_default_model_booting_alone_stays_awake_without_a_sleep(make_cluster):
    c = await make_cluster(
        [{"name": "a", "awake_by_default": True}, {"name": "b"}], start_engines=False, admin_token=TOKEN
    )
    await init_container_then_start(c, "a")
    await wait_until(lambda: c.manager.grant is None, what="a's boot to end")
    a = await described(c, "a")
    assert (a["state"], a["reason"], a["draining"]) == ("awake", "ready", False)
    assert c.engines["a"].stats.sleep_modes == [] and c.engines["a"].stats.wakes == []
    assert boot_sleeps(c, "a") == 0
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    c.assert_gpu_safe()


async def test_an_engine_that_comes_up_sleeping_is_taken_as_it_is(make_cluster):
    # b's engine comes up asleep at level 2 (its weights discarded), b's configured level being 1.
    c = await make_cluster([{"name": "a"}, {"name": "b"}], start_engines=False, admin_token=TOKEN)
    assert (await ask_boot(c, "b"))[0] == 200
    await c.engines["b"].start(asleep=True)
    c.engines["b"].force_sleep(2)
    await wait_until(lambda: c.manager.grant is None, what="b's boot to end")
    b = await described(c, "b")
    assert (b["state"], b["reason"], b["vram_in_use"]) == ("sleeping", "ready (came up sleeping)", 0.0)
    assert c.engines["b"].stats.sleep_modes == []  # no /sleep for an engine already asleep
    assert boot_sleeps(c, "b") == 0
    # The level learned at boot is the one woken from, even when /metrics cannot say it at the wake.
    c.engines["b"].faults.metrics_down = True
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert c.engines["b"].stats.wakes == ["weights", "kv_cache"] and c.engines["b"].stats.reloads == 1
    c.assert_gpu_safe()  # among others: no answer given before reload_weights


async def test_requests_for_an_engine_slept_for_the_next_boot_wait_for_its_wake(make_cluster):
    # a becomes ready while b waits to boot: a is put to sleep at once, so b can start. The requests
    # already waiting for a, and those that come during its sleep, must not reach its engine
    # before the wake that follows the boots.
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        start_engines=False,
        admin_token=TOKEN,
        policy={"sleep_timeout_seconds": 30},
    )
    assert (await ask_boot(c, "a"))[0] == 200
    assert (await ask_boot(c, "b"))[0] == 423
    early = asyncio.create_task(c.request("a"))
    await wait_until(lambda: len(c.manager.models["a"].queue) == 1, what="a request waiting for a")
    hold = asyncio.Event()
    c.engines["a"].faults.release_gate = hold
    await c.engines["a"].start()
    await wait_until(lambda: c.engines["a"].state == "sleeping", what="a asked to sleep for b's boot")
    a = await described(c, "a")
    assert (a["state"], a["reason"], a["draining"], a["queued"], a["inflight"]) == (
        "awake",
        "ready",
        True,
        1,
        0,
    )
    late = asyncio.create_task(c.request("a"))
    await wait_until(lambda: len(c.manager.models["a"].queue) == 2, what="a request queued during a's sleep")
    hold.set()
    await init_container_then_start(c, "b")
    for task in (early, late):
        r = await task
        assert (r.status, r.model, r.finish_reason) == (200, "a", "length")
    assert c.engines["a"].stats.sleeps == [1] and c.engines["a"].stats.wakes == [None]
    assert boot_sleeps(c, "a") == 1
    c.assert_gpu_safe()  # among others: no request reached a sleeping engine


async def test_an_engine_that_will_not_sleep_for_the_next_boot_keeps_serving(make_cluster):
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        start_engines=False,
        admin_token=TOKEN,
        policy={"sleep_timeout_seconds": 0.3, "queue_timeout_seconds": 4},
        timings=Timings(start_s=0.05),
    )
    assert (await ask_boot(c, "a"))[0] == 200
    assert (await ask_boot(c, "b"))[0] == 423
    c.engines["a"].faults.hang_sleep = True  # its /sleep never answers; it stays awake
    await c.engines["a"].start()
    await wait_until(lambda: c.manager.grant is None, what="a's boot to end")
    a = await described(c, "a")
    assert (a["state"], a["reason"], a["draining"]) == ("awake", "ready", False)
    assert a["last_error"].startswith("sleep failed")
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    assert await boot_line(c) == {"holder": None, "queue": ["b"]}  # b waits: a holds the GPU
    assert boot_sleeps(c, "a") == 0
    c.assert_gpu_safe()


# ------------------------------------------------------------------ making room for a boot


async def test_a_wanted_boot_does_not_wait_for_the_awake_models_residency(make_cluster):
    # a was used a moment ago: its demand grace and its slice protect it from a switch, not from a
    # boot (a node must recover on its own). A request waits for b, whose pod restarted.
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        awake=("a",),
        policy={"min_residency_seconds": 60, "demand_grace_seconds": 60},
    )
    assert (await c.request("a")).model == "a"
    await c.engines["b"].kill()
    wanted = asyncio.create_task(c.request("b"))
    await init_container_then_start(c, "b")  # the engine's start fails if a still holds the GPU
    r = await wanted
    assert r.status == 200 and r.model == "b"
    assert c.engines["a"].stats.sleeps == [1]
    c.assert_gpu_safe()


async def test_a_wanted_boot_waits_for_a_stream_and_does_not_cut_it(make_cluster):
    # A request waits for b while a streams: b's boot waits for the stream, longer than the drain
    # timeout, instead of cutting it (a drain that timed out would end it with finish "abort").
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}], timings=Timings(token_s=0.02), policy={"drain_timeout_seconds": 0.3}
    )
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=40))
    await wait_until(lambda: c.manager.models["a"].inflight == 1, what="a's stream to start")
    await c.engines["b"].kill()
    await wait_until(lambda: c.state("b") == "cold", what="b's engine seen gone")
    wanted = asyncio.create_task(c.request("b"))
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="a request waiting for b")
    status, body = await ask_boot(c, "b", wait=0.5)
    assert status == 423 and body["queue"] == ["b"]
    assert c.state("a") == "awake" and c.engines["a"].stats.sleeps == []
    r = await stream
    assert r.finish_reason == "length" and len(r.chunks) == 42
    await init_container_then_start(c, "b")
    assert (await wanted).model == "b"
    assert c.engines["a"].stats.aborted_by_sleep == 0
    c.assert_gpu_safe()


async def test_why_a_boot_waits_is_logged_for_the_operator(make_cluster, caplog):
    caplog.set_level(logging.DEBUG, logger="switcher")
    c = await make_cluster([{"name": "a"}, {"name": "b"}], awake=("a",))
    await c.engines["b"].kill()
    assert (await ask_boot(c, "b"))[0] == 423
    expected = "boot of b waits: a holds the GPU and no request waits for this model"
    await wait_until(lambda: expected in debug_lines(caplog), what="why b's boot waits, in the log")


async def test_a_boot_whose_room_cannot_be_made_is_tried_again_after_the_back_off(make_cluster, caplog):
    # a's engine does not answer its /sleep (it stays awake): b's boot, wanted, waits; it is tried
    # again after retry_backoff_initial_seconds, not at once, and without another event to start it.
    caplog.set_level(logging.WARNING, logger="switcher")
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        awake=("a",),
        policy={
            "sleep_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 2.0,
            "retry_backoff_max_seconds": 2.0,
        },
    )
    c.engines["a"].faults.hang_sleep = True
    await c.engines["b"].kill()
    await wait_until(lambda: c.state("b") == "cold", what="b's engine seen gone")
    wanted = asyncio.create_task(c.request("b"))
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="a request waiting for b")
    assert (await ask_boot(c, "b"))[0] == 423
    url = c.manager.models["a"].engine.base_url
    expected = (
        f"boot of b waits: could not make room: a: sleep failed: POST {url}/sleep?level=1: "
        "no answer within 0.3s"
    )

    def warned() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.WARNING
        ]

    await wait_until(lambda: expected in warned(), what="the failed room for b's boot, in the log")
    failed_at = time.monotonic()
    c.engines["a"].faults.hang_sleep = False
    assert c.manager.grant is None
    await wait_until(lambda: c.manager.grant == "b", within=10, what="b's boot tried again")
    assert time.monotonic() - failed_at >= 1.0  # the back-off is 2 s
    assert c.engines["a"].stats.sleep_modes == [None, None]  # one /sleep that hung, one that worked
    await c.engines["b"].start()
    assert (await wanted).model == "b"
    c.assert_gpu_safe()


async def test_a_boot_waits_for_vram_a_failed_engine_holds_and_goes_once_it_is_gone(make_cluster, caplog):
    caplog.set_level(logging.DEBUG, logger="switcher")
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}],
        awake=("a",),
        admin_token=TOKEN,
        policy={
            "sleep_timeout_seconds": 0.3,
            "engine_probe_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    # a's engine answers no control call: put to sleep by the operator, it is failed and counted as
    # holding the GPU (what it holds is unknown), and backed off for 30 s.
    c.engines["a"].faults.hang_sleep = True
    c.engines["a"].faults.hang_status = True
    status, body = await c.admin("POST", "/admin/models/a/sleep", TOKEN)
    assert (status, body["state"], body["vram_in_use"]) == (409, "failed", 1.0)
    await c.engines["b"].kill()
    assert (await ask_boot(c, "b", wait=0.5))[0] == 423  # no awake model can make room
    expected = (
        "boot of b waits: b needs 1 more but only 0 is free and putting every awake model to sleep "
        "frees 0 (capacity 1)"
    )
    await wait_until(lambda: expected in debug_lines(caplog), what="why b's boot waits, in the log")
    assert c.manager.grant is None
    await c.engines["a"].kill()  # a's pod is gone, and its memory with it; nothing else happens
    await wait_until(lambda: c.manager.grant == "b", what="b's boot once a's engine is gone")
    await c.engines["b"].start()
    await wait_until(lambda: c.state("b") == "sleeping", what="b ready")
    c.assert_gpu_safe()


async def test_a_waiting_boot_is_looked_at_again_every_half_second(make_cluster, caplog):
    # Not in a busy loop, and not only at the next health poll (10 s here): each look is logged.
    caplog.set_level(logging.DEBUG, logger="switcher")
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}], awake=("a",), policy={"health_interval_seconds": 10}
    )
    await c.engines["b"].kill()
    assert (await ask_boot(c, "b"))[0] == 423

    def looks() -> list[float]:
        return [
            r.created
            for r in caplog.records
            if r.name == "switcher" and r.getMessage().startswith("boot of b waits:")
        ]

    await wait_until(lambda: len(looks()) >= 4, what="four looks at b's boot")
    first, fourth = looks()[0], looks()[3]
    assert 0.75 <= fourth - first <= 3.5  # three intervals of 0.5 s
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_after_a_boot_grant_the_next_switch_is_chosen_by_the_clock_after_the_grant(make_cluster):
    # Co-residency on 20: a (15) awake, b (8) restarting, x and y (8 each) asleep: x or y fits beside
    # the booting b, not beside a. a, used a moment ago, keeps its slice against x and y, but not
    # against b's wanted boot. a's sleep for the boot is held until y's request has waited past half
    # its queue timeout: y is then overdue and goes before x, whose five priority-10 requests score
    # higher. The choice after the grant must be made at the time of the grant, not at the time the
    # boot step began (before a's sleep).
    models = [
        {"name": "a", "vram": 15},
        {"name": "b", "vram": 8},
        {"name": "x", "vram": 8, "priority": 10},
        {"name": "y", "vram": 8},
    ]
    c = await make_cluster(
        models,
        coresidency=True,
        gpu_gib=20,
        awake=("a",),
        policy={
            "min_residency_seconds": 30,
            "demand_grace_seconds": 30,
            "queue_timeout_seconds": 5,
            "sleep_timeout_seconds": 30,
        },
    )
    assert (await c.request("a")).model == "a"
    await c.engines["b"].kill()
    hold = asyncio.Event()
    c.engines["a"].faults.release_gate = hold
    y_since = time.monotonic()
    for_y = asyncio.create_task(c.request("y"))
    await wait_until(lambda: len(c.manager.models["y"].queue) == 1, what="y's request to queue")
    for_x = [asyncio.create_task(c.request("x")) for _ in range(5)]
    await wait_until(lambda: len(c.manager.models["x"].queue) == 5, what="x's requests to queue")
    for_b = asyncio.create_task(c.request("b"))
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="b's request to queue")
    assert (await ask_boot(c, "b"))[1]["queue"] == ["b"]
    await wait_until(lambda: c.engines["a"].state == "sleeping", what="a asked to sleep for b's boot")
    assert time.monotonic() - y_since < 2.5  # the boot step began before y was overdue
    await wait_until(lambda: time.monotonic() - y_since > 2.7, what="y's request to be overdue")
    hold.set()
    r = await for_y
    assert r.status == 200 and r.model == "y"
    assert c.engines["x"].stats.wakes == []
    assert c.manager.grant == "b"
    await c.engines["b"].start()
    assert (await for_b).model == "b"
    for task in for_x:  # x's clients give up: y keeps its slice
        task.cancel()
    await asyncio.gather(*for_x, return_exceptions=True)
    c.assert_gpu_safe()
