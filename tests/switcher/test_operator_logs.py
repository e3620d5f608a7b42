"""What the switcher tells its operator, in its log and its gauges, when models change state or an
engine misbehaves (found by `make mutation`: the rest of the suite checked what the switcher does,
not what it says)."""

from __future__ import annotations

import asyncio
import logging

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

AB = [{"name": "a"}, {"name": "b"}]


async def test_a_probe_that_gets_no_answer_is_logged_with_the_engine_and_the_reason(make_cluster, caplog):
    caplog.set_level(logging.DEBUG, logger="switcher")
    c = await make_cluster(AB, policy={"engine_probe_timeout_seconds": 0.3})
    c.engines["b"].faults.hang_status = True  # /is_sleeping never answers: a wedged engine
    url = c.manager.models["b"].engine.base_url
    expected = f"probe of b failed: GET {url}/is_sleeping: no answer within 0.3s"

    def logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.DEBUG]

    await wait_until(lambda: expected in logged(), what="the failed probe of b in the log")
    # The other engine answers its probes: nothing is logged about it.
    assert not [line for line in logged() if line.startswith("probe of a")]


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.WARNING]


async def test_a_drain_that_times_out_is_logged_with_what_was_still_in_flight(make_cluster, caplog):
    caplog.set_level(logging.INFO, logger="switcher")
    c = await make_cluster(AB, timings=Timings(token_s=0.05), policy={"drain_timeout_seconds": 0.1})
    long_a = asyncio.create_task(c.request("a", max_tokens=100))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    assert (await c.request("b")).model == "b"
    await long_a
    expected = "model a: 1 requests still in flight after drain_timeout_seconds=0.1; sleeping anyway"
    assert expected in warnings(caplog)
    assert c.metric("k3sllm_switcher_drain_timeouts_total", model="a") == 1
    assert c.metric("k3sllm_switcher_drain_timeouts_total", model="b") == 0


async def test_a_sleep_that_fails_on_an_engine_still_awake_is_logged_as_still_serving(make_cluster, caplog):
    caplog.set_level(logging.INFO, logger="switcher")
    c = await make_cluster(AB, policy={"sleep_timeout_seconds": 0.3})
    c.engines["a"].faults.hang_sleep = True  # /sleep never answers; /is_sleeping says awake
    assert (await c.request("b")).status == 503
    url = c.manager.models["a"].engine.base_url
    expected = (
        f"model a: sleep failed: POST {url}/sleep?level=1: no answer within 0.3s; "
        "it is still awake and keeps serving"
    )
    assert expected in warnings(caplog)
    assert c.manager.describe(c.manager.models["a"])["draining"] is False  # the admin API's JSON: false
    assert (await c.request("a")).model == "a"


async def test_state_changes_are_logged_and_failures_as_warnings(make_cluster, caplog):
    caplog.set_level(logging.INFO, logger="switcher")
    c = await make_cluster(AB)
    assert (await c.request("b")).model == "b"
    infos = [r.getMessage() for r in caplog.records if r.name == "switcher" and r.levelno == logging.INFO]
    assert "model a: awake -> sleeping" in infos and "model b: sleeping -> awake" in infos
    assert warnings(caplog) == []
    c.engines["a"].faults.fail_wakes = 1
    assert (await c.request("a")).status == 503
    failed = [
        line for line in warnings(caplog) if line.startswith("model a: sleeping -> failed (wake failed: ")
    ]
    assert len(failed) == 1, warnings(caplog)


async def test_queue_depth_and_inflight_gauges_count_each_model(make_cluster):
    c = await make_cluster(AB, timings=Timings(token_s=0.05), policy={"drain_timeout_seconds": 5.0})
    long_a = asyncio.create_task(c.request("a", max_tokens=20))
    await wait_until(lambda: c.manager.models["a"].inflight == 1)
    assert c.metric("k3sllm_switcher_inflight_requests", model="a") == 1
    b = asyncio.create_task(c.request("b"))  # waits for a's drain
    await wait_until(lambda: c.metric("k3sllm_switcher_queue_depth", model="b") == 1, what="b queued")
    assert c.metric("k3sllm_switcher_queue_depth", model="a") == 0
    assert c.metric("k3sllm_switcher_inflight_requests", model="b") == 0
    assert (await long_a).status == 200 and (await b).model == "b"
    assert c.metric("k3sllm_switcher_queue_depth", model="b") == 0
    assert c.metric("k3sllm_switcher_inflight_requests", model="a") == 0
