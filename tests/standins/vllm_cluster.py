"""Test harness: vLLM stand-in engines sharing one simulated GPU, with the real switcher in front.

Everything runs in the caller's event loop on 127.0.0.1. Used by tests/switcher and bench/switcher.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from standins.vllm_engine import Faults, Timings, VllmEngineStandIn, VramLedger
from switcher.app import Switcher, start_site
from switcher.config import parse_config

# Short timings so the whole suite stays fast on two cores.
FAST_POLICY: dict[str, Any] = {
    "min_residency_seconds": 0.0,
    "residency_switch_cost_multiple": 0.0,  # no slice from the switch cost unless a test asks
    "drain_timeout_seconds": 2.0,
    "queue_timeout_seconds": 10.0,
    "sleep_timeout_seconds": 2.0,
    "wake_timeout_seconds": 2.0,
    "retry_backoff_initial_seconds": 0.2,
    "retry_backoff_max_seconds": 1.0,
    "health_interval_seconds": 0.2,
    "engine_probe_timeout_seconds": 1.0,
    "boot_grant_timeout_seconds": 5.0,
    "boot_poll_max_seconds": 2.0,
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or None for streams
    chunks: list[dict] = field(default_factory=list)  # parsed SSE events of a stream
    arrivals: list[float] = field(default_factory=list)  # monotonic arrival time of each event

    @property
    def model(self) -> str | None:
        if self.chunks:
            return self.chunks[0].get("model")
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def text(self) -> str:
        if self.chunks:
            parts = []
            for c in self.chunks:
                for choice in c.get("choices", []):
                    parts.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
            return "".join(parts)
        choice = self.body["choices"][0]
        return choice.get("message", {}).get("content") or choice.get("text", "")

    @property
    def finish_reason(self) -> str | None:
        events = self.chunks or [self.body]
        for event in reversed(events):
            for choice in event.get("choices", []):
                if choice.get("finish_reason"):
                    return choice["finish_reason"]
        return None


@dataclass
class Cluster:
    ledger: VramLedger
    engines: dict[str, VllmEngineStandIn]
    switcher: Switcher
    runner: Any
    url: str
    session: aiohttp.ClientSession

    @property
    def manager(self):
        return self.switcher.manager

    def state(self, name: str) -> str:
        return str(self.manager.models[name].state)

    def metric(self, name: str, **labels: str) -> float:
        value = self.switcher.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def request(
        self,
        model: str,
        *,
        stream: bool = False,
        max_tokens: int = 4,
        path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if path.endswith("/embeddings"):
            payload: dict[str, Any] = {"model": model, "input": "hello"}
        elif path.endswith("/chat/completions"):
            payload = {
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": max_tokens,
            }
        else:
            payload = {"model": model, "prompt": "hi", "max_tokens": max_tokens}
        if stream:
            payload["stream"] = True
        async with self.session.post(self.url + path, json=payload, headers=headers) as resp:
            if resp.content_type == "text/event-stream":
                chunks, arrivals = [], []
                async for line in resp.content:
                    line = line.strip()
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    chunks.append(json.loads(line[6:]))
                    arrivals.append(time.monotonic())
                return Reply(resp.status, dict(resp.headers), None, chunks, arrivals)
            return Reply(resp.status, dict(resp.headers), await resp.json(content_type=None))

    async def admin(self, method: str, path: str, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(method, self.url + path, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()
        for engine in self.engines.values():
            await engine.close()

    def assert_gpu_safe(self) -> None:
        """The invariants every test checks: no over-commit, nothing sent to a sleeping engine."""
        assert self.ledger.refusals == [], self.ledger.refusals
        assert self.ledger.max_committed <= self.ledger.capacity + 1e-9
        for engine in self.engines.values():
            assert engine.stats.requests_while_sleeping == 0, f"{engine.name} got a request while asleep"
            assert engine.stats.stale_prefix_answers == 0, f"{engine.name} answered with a stale prefix cache"
            assert engine.stats.garbage_answers == 0, f"{engine.name} answered before reload_weights"


async def wait_until(predicate: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds; fail the test with ``what`` if it does not in time."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def start_cluster(
    models: list[dict[str, Any]],
    *,
    policy: dict[str, Any] | None = None,
    awake: tuple[str, ...] | None = None,
    start_engines: bool = True,
    timings: Timings | None = None,
    gpu_gib: float | None = None,
    coresidency: bool = False,
    residual_gib: float = 0.0,
    admin_token: str | None = None,
    extra: dict[str, Any] | None = None,
    faults: dict[str, Faults] | None = None,
) -> Cluster:
    """Start stand-in engines and a switcher.

    ``models`` entries: ``name``, optional ``vram`` (GiB on the stand-in ledger, default 10) and any
    switcher model fields (aliases, priority, ...). Without ``coresidency`` the switcher config has
    no VRAM figures (one awake model at a time) and the GPU holds exactly the largest model.
    ``awake`` names the engines that start awake (default: the first); the rest start asleep.
    ``faults`` are given to the named engines before the switcher first probes them.
    """
    vrams = {m["name"]: float(m.get("vram", 10)) for m in models}
    capacity = gpu_gib if gpu_gib is not None else max(vrams.values())
    ledger = VramLedger(capacity)
    engines: dict[str, VllmEngineStandIn] = {}
    for m in models:
        served = m.get("served_name", m["name"])
        engines[m["name"]] = VllmEngineStandIn(
            served, ledger, vrams[m["name"]], residual_gib=residual_gib, timings=timings or Timings()
        )
        if faults and m["name"] in faults:
            engines[m["name"]].faults = faults[m["name"]]
    if start_engines:
        awake_set = set(awake if awake is not None else (models[0]["name"],))
        for name, engine in engines.items():
            await engine.start(asleep=name not in awake_set)
    config_models = []
    for m in models:
        entry = {k: v for k, v in m.items() if k != "vram"}
        entry["base_url"] = engines[m["name"]].base_url
        if coresidency:
            entry["vram_gib"] = vrams[m["name"]]
        config_models.append(entry)
    pol = {**FAST_POLICY, **(policy or {})}
    if coresidency:
        pol["gpu_total_vram_gib"] = capacity
        pol["sleeping_residual_vram_gib"] = residual_gib
    config = parse_config({"models": config_models, "policy": pol, **(extra or {})})
    switcher = Switcher(config, admin_token)
    runner = await start_site(switcher, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    return Cluster(ledger, engines, switcher, runner, f"http://127.0.0.1:{port}", session)
