"""The switch metrics by value (found by `make mutation`): every series exists from the start
(switcher/metrics.py), so a test that only looks for a series' name cannot tell a switch counted
under the wrong label from one counted right. Dashboards and alerts read these numbers."""

from __future__ import annotations

from standins.vllm_cluster import wait_until

AB = [{"name": "a"}, {"name": "b"}]
PHASES = ("drain", "sleep", "wake", "total")


def phase_counts(c) -> dict[str, float]:
    return {p: c.metric("k3sllm_switcher_switch_duration_seconds_count", phase=p) for p in PHASES}


def switches(c, model: str) -> dict[str, float]:
    return {
        o: c.metric("k3sllm_switcher_switches_total", model=model, outcome=o) for o in ("success", "failed")
    }


async def test_a_switch_counts_each_phase_once_under_its_name(make_cluster):
    c = await make_cluster(AB)
    assert (await c.request("b")).model == "b"
    assert phase_counts(c) == {"drain": 1, "sleep": 1, "wake": 1, "total": 1}
    # Each phase took as long as it took: the stand-ins sleep and wake in 0.02 s, the switch well under 2 s.
    seconds = {p: c.metric("k3sllm_switcher_switch_duration_seconds_sum", phase=p) for p in PHASES}
    assert all(0 <= s < 2 for s in seconds.values()), seconds
    assert seconds["sleep"] >= 0.02 and seconds["wake"] >= 0.02
    assert seconds["total"] >= seconds["drain"] + seconds["sleep"] + seconds["wake"]
    assert switches(c, "b") == {"success": 1, "failed": 0} and switches(c, "a") == {"success": 0, "failed": 0}
    assert c.metric("k3sllm_switcher_sleeps_total", model="a", reason="switch") == 1


async def test_a_switch_that_cannot_make_room_is_counted_failed_and_never_wakes(make_cluster):
    policy = {"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3}
    c = await make_cluster(AB, policy=policy)
    a = c.engines["a"]
    a.faults.hang_sleep = a.faults.hang_status = True  # a's sleep is never answered
    r = await c.request("b")
    assert r.status == 503
    assert switches(c, "b") == {"success": 0, "failed": 1} and switches(c, "a") == {"success": 0, "failed": 0}
    # Drained and tried to sleep a; b was never woken, and no switch completed.
    assert phase_counts(c) == {"drain": 1, "sleep": 1, "wake": 0, "total": 0}
    assert c.engines["b"].stats.wakes == []


async def test_an_operator_activation_that_cannot_make_room_answers_failure(make_cluster):
    policy = {"sleep_timeout_seconds": 0.3, "engine_probe_timeout_seconds": 0.3}
    c = await make_cluster(AB, policy=policy)
    a = c.engines["a"]
    a.faults.hang_sleep = a.faults.hang_status = True
    ok, message = await c.manager.activate(c.manager.models["b"])
    assert ok is False and message.startswith("activation failed: could not make room: a: sleep failed: ")
    assert c.state("b") == "sleeping" and c.engines["b"].stats.wakes == []
    assert switches(c, "b") == {"success": 0, "failed": 1}


async def test_a_failed_wake_is_counted_failed_with_its_wake_phase(make_cluster):
    c = await make_cluster(AB)
    c.engines["b"].faults.fail_wakes = 1
    assert (await c.request("b")).status == 503
    assert switches(c, "b") == {"success": 0, "failed": 1}
    await wait_until(lambda: c.state("a") == "awake", what="a woken again (rollback)")
    # b's wake was timed (it failed); the rollback woke a outside a switch: no second wake phase.
    assert phase_counts(c) == {"drain": 1, "sleep": 1, "wake": 1, "total": 0}


async def test_every_models_switch_series_exist_at_zero_from_the_start(make_cluster):
    c = await make_cluster(AB)
    async with c.session.get(c.url + "/metrics") as resp:
        text = await resp.text()
    for model in ("a", "b"):
        for outcome in ("success", "failed"):
            assert f'k3sllm_switcher_switches_total{{model="{model}",outcome="{outcome}"}} 0.0' in text
        assert f'k3sllm_switcher_drain_timeouts_total{{model="{model}"}} 0.0' in text
