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
    await boot
    await wait_until(lambda: c.state("b") in ("sleeping", "awake"), what="b ready again")
    assert (await c.request("b")).model == "b"
    assert (await c.request("a")).model == "a"
    c.assert_gpu_safe()
