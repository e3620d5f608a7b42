"""The manager's parts (switcher/state.py, transitions.py, scheduling.py, health.py, idle.py,
manager.py) where the rest of the suite ran the code without pinning what users see (found by
`make mutation`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Faults, Timings

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


async def test_a_request_waiting_out_a_batch_window_is_served_after_an_over_capacity_sleep(make_cluster):
    # c's request waits for its batch window. Meanwhile b's engine is woken behind the switcher's
    # back: a and b awake exceed the GPU, and the switcher puts one to sleep at once. It must then go
    # on deciding (the window's end is still ahead) and serve c when the window closes, with no
    # other event needed to look again.
    c = await make_cluster(
        [*AB, {"name": "c"}],
        gpu_gib=30,  # the engines' own GPU holds all three; the switcher plans one awake at a time
        policy={"batch_window_seconds": 2.0, "queue_timeout_seconds": 4.0, "health_interval_seconds": 30},
    )
    started = time.monotonic()
    waiting = asyncio.create_task(c.request("c"))
    await wait_until(lambda: len(c.manager.models["c"].queue) == 1, what="c's request to queue")
    async with c.session.post(c.engines["b"].base_url + "/wake_up") as resp:
        assert resp.status == 200
    c.manager.report_engine_error(c.manager.models["b"])  # re-probe b now
    await wait_until(
        lambda: c.metric("k3sllm_switcher_sleeps_total", model="a", reason="over_capacity") == 1,
        within=1.5,
        what="a put to sleep to get within capacity",
    )
    assert not waiting.done()  # still inside its batch window
    r = await waiting
    assert r.status == 200 and r.model == "c"
    assert time.monotonic() - started >= 2.0
    assert c.state("a") == c.state("b") == "sleeping"
    c.assert_gpu_safe()


async def test_a_request_waiting_out_a_batch_window_is_served_after_a_boot_grant(make_cluster):
    # Co-residency: a (4) awake, c (3) asleep, d (3) restarting, on 10. c's request waits for its
    # batch window; meanwhile d's init container gets the boot grant. The switcher must go on
    # deciding after the grant and serve c (which fits beside a and the booting d) when the window
    # closes, not leave it queued until some other event (d's grant times out only after 5 s).
    models = [{"name": "a", "vram": 4}, {"name": "c", "vram": 3}, {"name": "d", "vram": 3}]
    c = await make_cluster(
        models,
        coresidency=True,
        gpu_gib=10,
        policy={"batch_window_seconds": 2.0, "queue_timeout_seconds": 4.0, "health_interval_seconds": 30},
    )
    await c.engines["d"].kill()
    started = time.monotonic()
    waiting = asyncio.create_task(c.request("c"))
    await wait_until(lambda: len(c.manager.models["c"].queue) == 1, what="c's request to queue")
    async with c.session.get(f"{c.url}/boot/d?wait=1") as resp:
        assert resp.status == 200 and (await resp.json())["granted"] is True
    assert not waiting.done()  # still inside its batch window
    r = await waiting
    assert r.status == 200 and r.model == "c"
    assert time.monotonic() - started >= 2.0
    assert c.state("d") == "starting" and c.state("a") == "awake"
    c.assert_gpu_safe()


async def test_a_sleep_answered_late_is_asked_again_with_the_configured_sleep_mode(make_cluster):
    # a's /sleep outlasts sleep_timeout_seconds; the switcher finds it sleeping and sends /sleep again
    # (answered once the memory is released). That repeated call carries policy.sleep_mode too.
    c = await make_cluster(
        AB, timings=Timings(sleep_s=0.45), policy={"sleep_mode": "wait", "sleep_timeout_seconds": 0.3}
    )
    r = await c.request("b")
    assert r.status == 200 and r.model == "b"
    assert c.engines["a"].stats.sleep_modes == ["wait", "wait"]
    c.assert_gpu_safe()


async def test_idle_ttl_applies_to_a_model_listed_after_one_without_a_ttl(make_cluster, caplog):
    # Co-residency: a (no TTL) and b (TTL 0.3 s) are awake together. b, idle, is put to sleep by its
    # TTL; a, listed first and without a TTL, neither stops that nor is slept itself.
    caplog.set_level("ERROR", logger="switcher")
    models = [{"name": "a", "vram": 4}, {"name": "b", "vram": 4, "idle_ttl_seconds": 0.3}]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, awake=("a", "b"))
    await wait_until(lambda: c.state("b") == "sleeping", within=3, what="b slept by its idle TTL")
    assert c.metric("k3sllm_switcher_sleeps_total", model="b", reason="idle_ttl") == 1
    assert c.state("a") == "awake" and c.engines["a"].stats.sleeps == []
    assert [r.getMessage() for r in caplog.records] == []  # no failed housekeeping step


async def test_the_release_of_a_late_sleeps_memory_is_logged_once_with_its_level(make_cluster, caplog):
    # a's sleep outlasts both waits (a fails, counted at its share); the health poll then finds it
    # sleeping but still releasing, and later reports the release once, with the level vLLM gives.
    caplog.set_level("INFO", logger="switcher")
    c = await make_cluster(AB, timings=Timings(sleep_s=1.0), policy={"sleep_timeout_seconds": 0.3})
    assert (await c.request("b")).status == 503
    expected = "model a: its engine has released its memory (sleep level 1)"

    def released() -> list[str]:
        return [r.getMessage() for r in caplog.records if "released its memory" in r.getMessage()]

    await wait_until(lambda: expected in released(), within=4, what="the release to be logged")
    assert c.manager.describe(c.manager.models["a"])["vram_in_use"] == 0.0
    await asyncio.sleep(0.6)  # three more health polls: nothing new to report
    assert released() == [expected]
    assert c.state("a") == "sleeping"


async def test_a_wedged_engine_does_not_stop_the_health_poll_learning_the_others(make_cluster):
    # a's engine never answers /is_sleeping; the periodic poll must still learn that b's went away.
    c = await make_cluster(
        AB, awake=("b",), faults={"a": Faults(hang_status=True)}, policy={"engine_probe_timeout_seconds": 0.3}
    )
    await wait_until(lambda: c.state("b") == "awake", what="b learned awake")
    await c.engines["b"].kill()
    await wait_until(lambda: c.state("b") == "cold", within=3, what="b learned gone by the periodic poll")
    assert c.state("a") == "cold"  # never answered
    c.engines["a"].faults.hang_status = False


async def test_an_engine_woken_behind_the_switchers_back_is_put_to_sleep_at_the_next_poll(make_cluster):
    # The periodic poll learns that a, listed first, was woken outside the switcher while b is awake:
    # over capacity, so the scheduler is told at once and puts one to sleep.
    c = await make_cluster(AB, awake=("b",), gpu_gib=20, policy={"health_interval_seconds": 0.2})
    async with c.session.post(c.engines["a"].base_url + "/wake_up") as resp:
        assert resp.status == 200
    await wait_until(
        lambda: (
            c.metric("k3sllm_switcher_sleeps_total", model="a", reason="over_capacity")
            + c.metric("k3sllm_switcher_sleeps_total", model="b", reason="over_capacity")
            == 1
        ),
        within=3,
        what="one of a and b put to sleep",
    )
    assert sorted([c.state("a"), c.state("b")]) == ["awake", "sleeping"]
    c.assert_gpu_safe()


async def test_a_failed_engine_that_stops_answering_does_not_stop_the_health_poll(make_cluster, caplog):
    # a could not be slept nor asked (failed, counted at its share); its probes keep getting no
    # answer. The poll skips it (its state stays as the failure left it) and still learns b's engine
    # went away.
    caplog.set_level("ERROR", logger="switcher")
    c = await make_cluster(AB, policy={"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3})
    c.engines["a"].faults.hang_sleep = c.engines["a"].faults.hang_status = True
    assert (await c.request("b")).status == 503
    assert c.state("a") == "failed"
    await c.engines["b"].kill()
    await wait_until(lambda: c.state("b") == "cold", within=3, what="b learned gone by the periodic poll")
    assert c.state("a") == "failed" and c.manager.describe(c.manager.models["a"])["vram_in_use"] == 1.0
    assert [r.getMessage() for r in caplog.records] == []  # no failed housekeeping step


async def test_a_request_queued_when_the_switcher_stops_is_told_so(make_cluster):
    c = await make_cluster(AB, policy={"batch_window_seconds": 30, "retry_after_seconds": 7})
    waiting = asyncio.create_task(c.request("b"))
    await wait_until(lambda: len(c.manager.models["b"].queue) == 1, what="b's request to queue")
    await c.manager.stop()
    r = await waiting
    assert r.status == 503 and r.headers["Retry-After"] == "7"
    assert r.body["error"]["message"] == "the switcher is shutting down"
    assert r.body["error"]["code"] == "model_unavailable"
    await c.manager.stop()  # stopping again is harmless (the app's cleanup stops it once more)


async def test_an_engine_found_sleeping_before_its_memory_is_released_holds_it_until_then(make_cluster):
    # Both engines start after the switcher. a starts awake and is put to sleep outside the switcher;
    # vLLM says sleeping from the pause on, but reports its level (and frees the memory) only after
    # the release. Until then a holds its VRAM: b may not be woken on top of it. The probe that sees
    # the release tells the scheduler at once (the periodic look at a blocked model is 1 s apart).
    gate = asyncio.Event()
    c = await make_cluster(
        AB,
        start_engines=False,
        faults={"a": Faults(release_gate=gate)},
        policy={"health_interval_seconds": 30},
    )
    await c.engines["b"].start(asleep=True)
    await c.engines["a"].start()
    outside_sleep = asyncio.create_task(c.session.post(c.engines["a"].base_url + "/sleep?level=1"))
    await wait_until(lambda: c.engines["a"].state == "sleeping", what="a's engine paused")
    for name in "ab":
        c.manager.report_engine_error(c.manager.models[name])  # probe now, not at the next poll
    await wait_until(lambda: c.state("a") == c.state("b") == "sleeping", what="a and b found sleeping")
    assert c.manager.describe(c.manager.models["a"])["vram_in_use"] == 1.0
    waiting = asyncio.create_task(c.request("b"))
    await asyncio.sleep(0.2)
    assert not waiting.done() and c.engines["b"].stats.wakes == []
    gate.set()
    (await outside_sleep).release()  # answered once a's memory is released
    released = time.monotonic()
    c.manager.report_engine_error(c.manager.models["a"])
    r = await waiting
    assert r.status == 200 and r.model == "b"
    assert time.monotonic() - released < 0.5
    c.assert_gpu_safe()


async def test_the_health_poll_reads_the_sleep_level_only_of_an_engine_not_known_asleep(make_cluster):
    # vLLM's /metrics is a whole Prometheus page: the poll reads it only to learn a sleep level it
    # does not know (b, found sleeping at start), not on every poll of an engine known asleep.
    c = await make_cluster(AB)
    assert c.engines["b"].stats.metrics_reads == 1
    await asyncio.sleep(0.8)  # about four health polls
    assert c.engines["b"].stats.metrics_reads == 1
    assert c.engines["a"].stats.metrics_reads == 0  # awake: no sleep level to read


async def test_of_two_awake_by_default_models_that_do_not_fit_together_the_higher_priority_is_woken(
    make_cluster,
):
    # b is listed first, a has the higher priority: a is woken, whatever the order of the config.
    models = [
        {"name": "b", "vram": 6, "awake_by_default": True},
        {"name": "a", "vram": 6, "awake_by_default": True, "priority": 1},
    ]
    c = await make_cluster(models, coresidency=True, gpu_gib=10, awake=())
    await wait_until(lambda: c.state("a") == "awake", what="a (higher priority) woken")
    assert c.state("b") == "sleeping" and c.engines["b"].stats.wakes == []
    c.assert_gpu_safe()


async def test_a_batch_window_closes_on_time(make_cluster):
    # The scheduler sleeps until the window's end, not a fixed slice longer than the window.
    c = await make_cluster(AB, policy={"batch_window_seconds": 0.3})
    started = time.monotonic()
    r = await c.request("b")
    took = time.monotonic() - started
    assert r.status == 200 and r.model == "b"
    assert 0.3 <= took < 0.9, took


async def test_the_admin_api_shows_a_model_never_probed_never_used_and_never_failed(make_cluster):
    # b's engine never answers /is_sleeping, c's is up and asleep: neither has served a request or
    # failed. The admin API says so (nulls, not a zero time or an empty error), and a client waiting
    # for b is told why it is not available.
    c = await make_cluster(
        [*AB, {"name": "c"}],
        faults={"b": Faults(hang_status=True)},
        admin_token="parts-token",
        policy={"engine_probe_timeout_seconds": 0.3, "queue_timeout_seconds": 0.5},
    )
    status, body = await c.admin("GET", "/admin/models", "parts-token")
    assert status == 200
    models = {m["name"]: m for m in body["models"]}
    assert models["b"]["state"] == "cold" and models["b"]["reason"] == "not probed yet"
    assert models["b"]["vram_in_use"] == 0.0
    for name in "bc":
        assert models[name]["idle_for_seconds"] is None, name
        assert models[name]["draining"] is False and models[name]["awake_for_seconds"] is None, name
        assert models[name]["last_error"] is None, name
        assert models[name]["failures"] == 0 and models[name]["retry_in_seconds"] is None, name
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["code"] == "queue_timeout"
    assert (
        r.body["error"]["message"]
        == "model b did not become available within 0.5s (state cold: not probed yet)"
    )
    c.engines["b"].faults.hang_status = False


async def test_a_model_kept_asleep_by_a_failed_engine_is_woken_once_that_engine_is_found_asleep(
    make_cluster, caplog
):
    # c's wake fails and its engine then gives no answer: c may hold its whole share, so a (slept for
    # c) is not woken back, and a's request waits. When c's engine is found asleep during its back-off
    # (its state stays failed, its memory is free), a is woken at once: not at the scheduler's next
    # periodic look at the blocked model (min(1 s, health_interval_seconds), about 0.75 s later
    # here), and without spinning meanwhile.
    caplog.set_level("DEBUG", logger="switcher")
    c = await make_cluster(
        [*AB, {"name": "c"}],
        policy={
            "health_interval_seconds": 30,
            "engine_probe_timeout_seconds": 0.2,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
            "queue_timeout_seconds": 4,
        },
    )
    c.engines["c"].faults.fail_wakes = 1
    c.engines["c"].faults.hang_status = True
    assert (await c.request("c")).status == 503
    failed = c.manager.models["c"]
    assert c.state("c") == "failed" and failed.use == 1.0 and c.state("a") == "sleeping"
    started = time.monotonic()
    waiting = asyncio.create_task(c.request("a"))
    await asyncio.sleep(0.2)
    c.engines["c"].faults.hang_status = False
    a_wakes = len(c.engines["a"].stats.wakes)
    c.manager.report_engine_error(failed)
    await wait_until(lambda: failed.use == 0.0, what="c's engine found asleep")
    found_asleep = time.monotonic()
    await wait_until(lambda: len(c.engines["a"].stats.wakes) > a_wakes, what="a's wake")
    assert time.monotonic() - found_asleep < 0.5
    r = await waiting
    assert r.status == 200 and r.model == "a"
    assert time.monotonic() - started < 1.6
    expected = (
        "waiting: a needs 1 more but only 0 is free and putting every awake model to sleep frees 0 "
        "(capacity 1)"
    )
    waits = [m for m in caplog.messages if m.startswith("waiting: ")]
    assert waits and set(waits) == {expected} and len(waits) <= 3, waits
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []  # no failed step
    c.assert_gpu_safe()


async def test_each_engine_is_polled_once_per_health_interval(make_cluster):
    # Once at start, then every health_interval_seconds (1 s here): in the first 1.5 s, twice.
    c = await make_cluster(AB, policy={"health_interval_seconds": 1.0})
    started = time.monotonic()
    assert [e.stats.status_probes for e in c.engines.values()] == [1, 1]
    await asyncio.sleep(1.5 - (time.monotonic() - started))
    assert [e.stats.status_probes for e in c.engines.values()] == [2, 2]


async def test_an_idle_ttl_is_applied_within_a_fifth_of_a_second_whatever_the_health_interval(make_cluster):
    # The housekeeping looks at idle TTLs every 0.2 s (or half the health interval, if shorter), not
    # only at each health poll (30 s here).
    c = await make_cluster(
        [{"name": "a", "idle_ttl_seconds": 0.1}, {"name": "b"}], policy={"health_interval_seconds": 30}
    )
    assert (await c.request("a")).status == 200
    ended = time.monotonic()
    c.manager.report_engine_error(c.manager.models["b"])  # a housekeeping step now: a is not idle yet
    await wait_until(lambda: c.state("a") == "sleeping", within=3, what="a slept by its idle TTL")
    assert time.monotonic() - ended < 0.8


async def test_a_failed_model_stays_failed_during_its_back_off_whatever_its_engine_says(make_cluster):
    # b's wake fails (its engine stays asleep): b is failed and backed off for 30 s. The health polls
    # that find its engine asleep meanwhile keep the failure visible (state, metric, the 503's reason).
    c = await make_cluster(AB, policy={"retry_backoff_initial_seconds": 30, "retry_backoff_max_seconds": 30})
    c.engines["b"].faults.fail_wakes = 1
    assert (await c.request("b")).status == 503
    engine = c.engines["b"]
    probes = engine.stats.status_probes
    await wait_until(lambda: engine.stats.status_probes >= probes + 3, what="three more polls of b")
    assert c.state("b") == "failed" and engine.state == "sleeping"
    assert c.metric("k3sllm_switcher_model_state", model="b", state="failed") == 1
    r = await c.request("b")
    assert r.status == 503 and r.body["error"]["message"] == "model b is unavailable: wake failed"


async def test_a_failed_model_found_still_awake_during_its_back_off_keeps_its_vram_counted(
    make_cluster, caplog
):
    # a could be neither slept nor asked (failed, counted at its share). Its engine then answers again:
    # still awake, as its sleep never happened. During its back-off a stays failed, holding its share.
    caplog.set_level("ERROR", logger="switcher")
    c = await make_cluster(
        AB,
        policy={
            "sleep_timeout_seconds": 0.3,
            "engine_probe_timeout_seconds": 0.3,
            "retry_backoff_initial_seconds": 30,
            "retry_backoff_max_seconds": 30,
        },
    )
    engine = c.engines["a"]
    engine.faults.hang_sleep = engine.faults.hang_status = True
    assert (await c.request("b")).status == 503
    engine.faults.hang_status = False
    probes = engine.stats.status_probes
    await wait_until(lambda: engine.stats.status_probes >= probes + 3, what="three more polls of a")
    described = c.manager.describe(c.manager.models["a"])
    assert described["state"] == "failed" and described["vram_in_use"] == 1.0
    assert engine.state == "awake"
    assert [r.getMessage() for r in caplog.records] == []


async def test_an_idle_ttl_on_a_model_never_awake_does_not_stop_the_others(make_cluster, caplog):
    # b (asleep since start, never awake) and a (awake) both have an idle TTL: a is put to sleep by
    # its TTL; b, listed first, is simply not awake.
    caplog.set_level("ERROR", logger="switcher")
    c = await make_cluster(
        [{"name": "b", "idle_ttl_seconds": 0.3}, {"name": "a", "idle_ttl_seconds": 0.3}], awake=("a",)
    )
    await wait_until(lambda: c.state("a") == "sleeping", within=3, what="a slept by its idle TTL")
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="idle_ttl") == 1
    assert c.state("b") == "sleeping"
    assert [r.getMessage() for r in caplog.records] == []  # no failed housekeeping step
