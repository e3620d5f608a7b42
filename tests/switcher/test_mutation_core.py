"""The manager's initial bookkeeping (switcher/core.py, ``ManagerCore.__init__``) as users see it:
the state series before any engine has answered, the admin API before any switch, and VRAM declared
as a share of the GPU (found by `make mutation`)."""

from __future__ import annotations

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Faults

TOKEN = "core-token"
STATES = ("cold", "starting", "awake", "sleeping", "failed")


async def test_a_model_whose_engine_never_answered_is_reported_cold_from_the_start(make_cluster):
    # b's engine is wedged at switcher start: /is_sleeping never answers, so no probe result ever
    # sets b's state. Its state series must still say where it is (cold), not be all zero, which an
    # alert on "no state" would take for a missing model.
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}], faults={"b": Faults(hang_status=True)}, admin_token=TOKEN
    )
    assert c.state("b") == "cold"
    for state in STATES:
        assert c.metric("k3sllm_switcher_model_state", model="b", state=state) == (state == "cold"), state
    assert c.metric("k3sllm_switcher_model_state", model="a", state="awake") == 1
    c.engines["b"].faults.hang_status = False  # later probes answer; the hung one is cancelled at close


async def test_the_admin_api_reports_no_switch_before_and_after_one(make_cluster):
    c = await make_cluster([{"name": "a"}, {"name": "b"}], admin_token=TOKEN)
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200 and body["switching"] is None
    assert (await c.request("b")).model == "b"
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200 and body["switching"] is None


async def test_vram_declared_as_a_share_of_the_gpu_is_counted_in_gib(make_cluster):
    # 0.5 + 0.25 of an 80 GiB GPU fit together; c (0.5) needs a put to sleep, not b.
    models = [
        {"name": "a", "vram": 40, "gpu_memory_utilization": 0.5},
        {"name": "b", "vram": 20, "gpu_memory_utilization": 0.25},
        {"name": "c", "vram": 40, "gpu_memory_utilization": 0.5},
    ]
    c = await make_cluster(
        models,
        gpu_gib=80,
        policy={"gpu_total_vram_gib": 80.0, "sleeping_residual_vram_gib": 0.0},
        admin_token=TOKEN,
    )
    status, body = await c.admin("GET", "/admin/models", TOKEN)
    assert status == 200 and body["vram_capacity"] == 80.0
    assert {m["name"]: m["vram_when_awake"] for m in body["models"]} == {"a": 40.0, "b": 20.0, "c": 40.0}
    assert (await c.request("b")).model == "b"
    assert c.state("a") == "awake" and c.engines["a"].stats.sleeps == []  # both fit: nothing slept
    assert (await c.request("c")).model == "c"
    await wait_until(lambda: c.state("c") == "awake", what="c awake")
    assert c.state("a") == "sleeping" and c.state("b") == "awake"
    c.assert_gpu_safe()
