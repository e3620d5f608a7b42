"""Boot serialisation: engines start one at a time through GET /boot/<model> grants."""

from __future__ import annotations

import asyncio

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings


async def init_container_then_start(c, name: str) -> None:
    """What a vLLM pod does: its init container long-polls for a grant, then the engine starts."""
    while True:
        async with c.session.get(f"{c.url}/boot/{name}?wait=1") as resp:
            if resp.status == 200:
                break
            assert resp.status == 423, await resp.text()
    await c.engines[name].start()


async def test_boot_storm_recovers_without_over_commit(make_cluster):
    models = [{"name": "a", "awake_by_default": True}, {"name": "b"}, {"name": "c"}, {"name": "d"}]
    c = await make_cluster(models, start_engines=False, timings=Timings(start_s=0.1))
    assert {c.state(m["name"]) for m in models} == {"cold"}
    # Every pod starts at once, as after a node reboot; each engine wants the whole GPU to start.
    await asyncio.gather(*(init_container_then_start(c, m["name"]) for m in models))
    await wait_until(
        lambda: [c.state(m["name"]) for m in models] == ["awake", "sleeping", "sleeping", "sleeping"],
        what="all engines ready, the default-awake one awake",
    )
    c.assert_gpu_safe()  # no start or wake was refused by the simulated GPU
    for m in models:
        assert c.engines[m["name"]].stats.starts == 1
        assert c.metric("k3sllm_switcher_boot_grants_total", model=m["name"]) == 1
    for m in models:
        r = await c.request(m["name"])
        assert r.status == 200 and r.model == m["name"]
    c.assert_gpu_safe()


async def test_boot_grant_is_exclusive_and_says_who_holds_it(make_cluster):
    c = await make_cluster([{"name": "a"}, {"name": "b"}], start_engines=False)
    async with c.session.get(f"{c.url}/boot/a?wait=0") as resp:
        assert resp.status == 200 and (await resp.json())["granted"] is True
    async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
        body = await resp.json()
        assert resp.status == 423 and resp.headers["Retry-After"] == "1"
        assert body == {"model": "b", "granted": False, "holder": "a", "position": 1, "queue": ["b"]}
    async with c.session.get(f"{c.url}/boot/a?wait=0") as resp:  # asking again is harmless
        assert resp.status == 200
    async with c.session.get(f"{c.url}/boot/nope") as resp:
        assert resp.status == 404
    assert c.state("a") == "starting"


async def test_grant_not_followed_by_readiness_passes_to_the_next(make_cluster):
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}], start_engines=False, policy={"boot_grant_timeout_seconds": 0.3}
    )
    async with c.session.get(f"{c.url}/boot/a?wait=0") as resp:
        assert resp.status == 200  # ...and a's engine never starts
    await init_container_then_start(c, "b")
    await wait_until(lambda: c.state("b") == "sleeping" or c.state("b") == "awake", what="b ready")
    assert c.state("a") == "failed" and "boot_grant_timeout_seconds" in c.manager.models["a"].reason
    c.assert_gpu_safe()


async def test_restarted_pod_boots_again_while_others_serve(make_cluster):
    c = await make_cluster([{"name": "a"}, {"name": "b"}], awake=("a",))
    await c.engines["b"].kill()  # b's pod is replaced: its init container asks for a grant
    boot = asyncio.create_task(init_container_then_start(c, "b"))
    await wait_until(lambda: c.manager.boot_queue == ["b"], what="b in the boot line")
    await asyncio.sleep(0.3)
    assert c.state("a") == "awake" and not boot.done()  # the boot alone takes nothing from a
    wanted = asyncio.create_task(c.request("b"))  # a request for b makes room for its boot
    await boot
    assert (await wanted).model == "b"
    await wait_until(lambda: c.state("b") in ("sleeping", "awake"), what="b ready again")
    assert (await c.request("b")).model == "b"
    assert (await c.request("a")).model == "a"
    c.assert_gpu_safe()


async def test_boot_call_for_a_live_engine_changes_nothing(make_cluster):
    # Co-residency: a and b are both awake and counted; a loop of /boot calls for a live engine
    # must neither forget b's VRAM nor sleep and wake anything.
    c = await make_cluster(
        [{"name": "a", "vram": 10}, {"name": "b", "vram": 10}, {"name": "c", "vram": 10}],
        coresidency=True,
        gpu_gib=20,
        awake=("a", "b"),
    )
    for _ in range(20):
        async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
            body = await resp.json()
            assert resp.status == 423 and "not restarting" in body["reason"]
    assert (c.state("a"), c.state("b")) == ("awake", "awake")
    assert c.manager.models["b"].use == 10
    assert c.engines["a"].stats.sleeps == [] and c.engines["b"].stats.sleeps == []
    assert c.manager.grant is None and c.manager.boot_queue == []
    r = await c.request("c")  # c must evict one of them: b's VRAM is still counted
    assert r.status == 200
    c.assert_gpu_safe()


async def test_boot_does_not_cut_a_stream_and_waits_for_it(make_cluster):
    # The stream outlives drain_timeout_seconds: a boot that drained a would cut it (finish "abort").
    c = await make_cluster(
        [{"name": "a"}, {"name": "b"}], timings=Timings(token_s=0.02), policy={"drain_timeout_seconds": 0.3}
    )
    stream = asyncio.create_task(c.request("a", stream=True, max_tokens=40))
    await wait_until(lambda: c.manager.models["a"].inflight == 1, what="a's stream to start")
    await c.engines["b"].kill()
    async with c.session.get(f"{c.url}/boot/b?wait=0.3") as resp:
        assert resp.status == 423  # a is serving: b waits, a is not drained under its stream
    r = await stream
    assert r.finish_reason == "length" and len(r.chunks) == 42
    wanted = asyncio.create_task(c.request("b"))  # b is wanted: its boot may now put idle a to sleep
    await init_container_then_start(c, "b")
    assert (await wanted).model == "b"
    await wait_until(lambda: c.state("b") in ("sleeping", "awake"), what="b booted after a's stream")
    c.assert_gpu_safe()


async def test_admin_revokes_a_grant_whose_engine_never_comes(make_cluster):
    token = "t0k3n"
    c = await make_cluster([{"name": "a"}, {"name": "b"}], admin_token=token)
    await c.engines["b"].kill()
    async with c.session.get(f"{c.url}/boot/b?wait=0.3") as resp:
        assert resp.status == 423  # the boot alone puts nothing to sleep
    assert c.state("a") == "awake" and c.engines["a"].stats.sleeps == []
    wanted = asyncio.create_task(c.manager.wait_admitted(c.manager.models["b"]))
    async with c.session.get(f"{c.url}/boot/b?wait=1") as resp:
        assert resp.status == 200  # a request waits for b, and a was idle: a was put to sleep for it
    assert c.state("a") == "sleeping" and c.state("b") == "starting"
    wanted.cancel()
    status, body = await c.admin("DELETE", "/admin/boot/b", token)
    assert status == 200 and body["state"] == "cold"
    assert c.manager.grant is None
    r = await c.request("a")  # the GPU is a's again
    assert r.status == 200 and r.model == "a"
    assert (await c.admin("DELETE", "/admin/boot/b", token))[0] == 409  # nothing left to revoke
    assert (await c.admin("DELETE", "/admin/boot/b", "wrong"))[0] == 401
    c.assert_gpu_safe()


async def test_boot_for_an_engine_that_is_not_up_puts_nothing_to_sleep(make_cluster):
    # GET /boot is unauthenticated: a call for an engine that never comes must not take the GPU from
    # the awake model, idle or not, nor hold a grant that blocks it.
    c = await make_cluster([{"name": "a"}, {"name": "b"}], awake=("a",))
    await c.engines["b"].kill()
    for _ in range(3):
        async with c.session.get(f"{c.url}/boot/b?wait=0.2") as resp:
            body = await resp.json()
            assert resp.status == 423 and body["granted"] is False and body["queue"] == ["b"]
    assert c.state("a") == "awake" and c.engines["a"].stats.sleeps == []
    assert c.manager.grant is None
    r = await c.request("a")
    assert r.status == 200 and r.model == "a"
    c.assert_gpu_safe()


async def test_a_booted_default_model_does_not_hold_the_gpu_against_the_next_boot(make_cluster):
    # a (awake by default) boots first while b waits in line: a is put to sleep so b can start, and
    # woken again once every boot is done.
    models = [{"name": "a", "awake_by_default": True}, {"name": "b"}]
    c = await make_cluster(models, start_engines=False, timings=Timings(start_s=0.1))
    async with c.session.get(f"{c.url}/boot/a?wait=0") as resp:
        assert resp.status == 200
    async with c.session.get(f"{c.url}/boot/b?wait=0") as resp:
        assert resp.status == 423
    await c.engines["a"].start()
    await init_container_then_start(c, "b")
    await wait_until(lambda: (c.state("a"), c.state("b")) == ("awake", "sleeping"), what="boots done")
    assert c.engines["a"].stats.sleeps == [1] and c.engines["b"].stats.starts == 1
    c.assert_gpu_safe()
