"""The request path against stand-in engines: routing, aliases, errors, streaming, disconnects."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from standins.vllm_cluster import wait_until
from standins.vllm_engine import Timings

TWO = [
    {"name": "llama"},
    {"name": "qwen", "aliases": ["claude-3-5-sonnet", "gpt-4o"], "served_name": "Qwen/Qwen3-8B"},
]


async def test_routes_by_model_and_alias(make_cluster):
    c = await make_cluster(TWO)
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = await c.request("llama", path=path)
        assert r.status == 200 and r.model == "llama" and r.text.startswith("[llama]")
    # An alias reaches the engine under its served name (the stand-in 404s any other name).
    r = await c.request("claude-3-5-sonnet")
    assert r.status == 200, r.body
    assert r.model == "Qwen/Qwen3-8B" and r.text.startswith("[Qwen/Qwen3-8B]")
    r = await c.request("gpt-4o", path="/v1/embeddings")
    assert r.status == 200 and r.body["model"] == "Qwen/Qwen3-8B" and len(r.body["data"][0]["embedding"]) == 8
    assert c.metric("k3sllm_switcher_requests_total", model="qwen", code="200") == 2
    c.assert_gpu_safe()


async def test_unknown_model_is_an_openai_404(make_cluster):
    c = await make_cluster(TWO)
    r = await c.request("gpt-5")
    assert r.status == 404
    assert r.body["error"]["code"] == "model_not_found"
    assert "gpt-5" in r.body["error"]["message"] and "llama" in r.body["error"]["message"]
    async with c.session.post(c.url + "/v1/chat/completions", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_models_lists_catalog_with_states(make_cluster):
    c = await make_cluster(TWO)
    async with c.session.get(c.url + "/v1/models") as resp:
        body = await resp.json()
    by_id = {m["id"]: m for m in body["data"]}
    assert body["object"] == "list"
    assert by_id["llama"]["state"] == "awake" and by_id["qwen"]["state"] == "sleeping"
    assert by_id["qwen"]["aliases"] == ["claude-3-5-sonnet", "gpt-4o"]


async def test_streaming_passes_chunks_through_as_they_come(make_cluster):
    c = await make_cluster(TWO, timings=Timings(token_s=0.05))
    r = await c.request("llama", stream=True, max_tokens=6)
    assert r.status == 200 and r.model == "llama" and r.finish_reason == "length"
    assert r.text == "[llama] tok0 tok1 tok2 tok3 tok4 tok5 "
    # Buffering would deliver every event at the end; pass-through spreads them over ~6 x 50 ms.
    spread = r.arrivals[-1] - r.arrivals[0]
    assert spread >= 0.2, f"events arrived within {spread:.3f}s: the stream was buffered"


async def test_client_disconnect_cancels_the_upstream_request(make_cluster):
    c = await make_cluster(TWO, timings=Timings(token_s=0.05))
    engine = c.engines["llama"]
    payload = {"model": "llama", "messages": [], "max_tokens": 200, "stream": True}
    async with aiohttp.ClientSession() as client:
        resp = await client.post(c.url + "/v1/chat/completions", json=payload)
        first = await resp.content.readline()
        assert first.startswith(b"data: ")
        resp.close()  # the client goes away mid-stream
    await wait_until(lambda: engine.stats.cancelled == 1, what="the engine to see its request cancelled")
    assert engine.stats.tokens < 20
    await wait_until(
        lambda: c.manager.models["llama"].inflight == 0, what="the switcher to release the request"
    )


async def test_client_disconnect_while_queued_leaves_the_queue(make_cluster):
    c = await make_cluster(TWO, timings=Timings(wake_s=0.5))
    payload = json.dumps({"model": "qwen", "messages": []}).encode()
    async with aiohttp.ClientSession() as client:
        task = asyncio.create_task(client.post(c.url + "/v1/chat/completions", data=payload))
        await wait_until(lambda: c.manager.switching == "qwen", what="the switch to qwen to start")
        assert len(c.manager.models["qwen"].queue) == 1
        task.cancel()
    await wait_until(lambda: c.state("qwen") == "awake", what="qwen to wake")
    await wait_until(lambda: c.manager.models["qwen"].inflight == 0 and not c.manager.models["qwen"].queue)
    # The abandoned request was never forwarded.
    assert c.engines["qwen"].stats.served == 0
