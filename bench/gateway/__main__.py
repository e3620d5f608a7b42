"""Gateway benchmark: ``python -m bench.gateway [--quick]``.

What the gateway (the real LiteLLM proxy, PostgreSQL behind it, a virtual key on every request) adds on
top of the switcher and the engine, measured in one run against three targets that serve the same
stand-in engine:

  direct    the vLLM stand-in engine itself
  switcher  the real switcher in front of it
  gateway   LiteLLM -> switcher -> engine, with the config module_utils/litellm_config.py builds for
            the role and the worker count the role chooses for this machine's cores
            (gateway_workers(os.cpu_count()))

Rows: latency of a one-token chat completion at concurrency 1 (p50, p99; added = minus direct), and
streamed chunks/s summed over concurrent streams at 5 ms per token. Requests are interleaved across
the targets so that drift of a shared machine hits all alike. Prints the ratios against direct.

Issue 10's target: the gateway must not cap the GPU. On a real node LiteLLM gets a quarter of the
cores; here (a few shared cores, everything on one machine) the numbers say what one gateway worker
costs per request and per chunk, to hold against FACTS.md's 26-29 ms p50 and 800-950 chunks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from bench.switcher.__main__ import chat, free_port, pct, processes, start_engines, start_switcher, wait_ready

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "collections")]

from k3sllm_testlib.gateway import (  # noqa: E402
    LiteLLM,
    Postgres,
    apply_migrations,
    litellm_missing,
    litellm_role_default,
)

from ansible_collections.k3sllm.platform.plugins.module_utils.litellm_config import (  # noqa: E402
    build_litellm_config,
    gateway_workers,
)

TOKEN_S = 0.005


@dataclass(frozen=True)
class Settings:
    rounds: int
    seq_requests: int  # per round and target
    streams: int
    stream_tokens: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(rounds=2, seq_requests=60, streams=4, stream_tokens=100)
        return cls(rounds=5, seq_requests=200, streams=8, stream_tokens=300)


async def one(session: aiohttp.ClientSession, url: str, payload: dict, headers: dict) -> float:
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=payload, headers=headers) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {body[:300]!r}")
    return time.perf_counter() - started


async def stream_rate(session, url: str, model: str, streams: int, tokens: int, headers: dict) -> float:
    """Chunks per second, summed over concurrent streams, each from its first chunk to its last."""

    async def one_stream() -> float:
        arrivals: list[float] = []
        payload = chat(model, tokens, stream=True)
        async with session.post(url + "/v1/chat/completions", json=payload, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.read())[:300]!r}")
            async for line in resp.content:
                if line.startswith(b"data: ") and not line.startswith(b"data: [DONE]"):
                    arrivals.append(time.perf_counter())
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    return sum(await asyncio.gather(*(one_stream() for _ in range(streams))))


async def measure(s: Settings, tmp: Path, workers: int) -> dict:
    fast_port, stream_port = free_port(), free_port()
    with processes() as procs:
        start_engines(procs, {"fast": (fast_port, 10)}, 40, "--tokens", "1")
        start_engines(procs, {"stream": (stream_port, 10)}, 40, "--token-s", str(TOKEN_S))
        models = [
            {"name": "fast", "base_url": f"http://127.0.0.1:{fast_port}", "vram_gib": 10},
            {"name": "stream", "base_url": f"http://127.0.0.1:{stream_port}", "vram_gib": 10},
        ]
        sw = start_switcher(procs, tmp, models, {"gpu_total_vram_gib": 40})
        config = build_litellm_config(
            [{"name": "fast"}, {"name": "stream"}], sw + "/v1", {"store_prompts": False}
        )
        config_path = tmp / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        pg = Postgres.start()
        litellm = None
        try:
            apply_migrations(pg)
            # The role's worker health-check patience (uvicorn's 5 s default kills workers that are
            # still importing their Prisma client).
            timeout = litellm_role_default("litellm_worker_healthcheck_timeout_seconds")
            patience = ("--timeout_worker_healthcheck", str(timeout)) if workers > 1 else ()
            litellm = LiteLLM(
                config_path,
                pg.dsn,
                tmp,
                workers=workers,
                extra_args=patience,
                start_timeout=300 + 150 * workers,
            )
            started = time.monotonic()
            litellm.start()
            print(f"  LiteLLM ({workers} workers) ready in {time.monotonic() - started:.0f} s", flush=True)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                master = {"Authorization": f"Bearer {litellm.master_key}"}
                async with session.post(litellm.url + "/key/generate", json={}, headers=master) as resp:
                    key = (await resp.json())["key"]
                auth = {"Authorization": f"Bearer {key}"}
                targets = {
                    "direct": (f"http://127.0.0.1:{fast_port}", f"http://127.0.0.1:{stream_port}", {}),
                    "switcher": (sw, sw, {}),
                    "gateway": (litellm.url, litellm.url, auth),
                }
                await wait_ready(session, sw)
                for fast_url, _, headers in targets.values():
                    for _ in range(20):  # warm connections, caches and code paths
                        await one(session, fast_url, chat("fast", 1), headers)
                out: dict = {k: {"seq": [], "stream": []} for k in targets}
                rng = random.Random(1)
                order = list(targets)
                for _ in range(s.rounds * s.seq_requests):
                    rng.shuffle(order)
                    for target in order:
                        url, _, headers = targets[target]
                        out[target]["seq"].append(await one(session, url, chat("fast", 1), headers))
                for _ in range(s.rounds):
                    rng.shuffle(order)
                    for target in order:
                        _, url, headers = targets[target]
                        rate = await stream_rate(session, url, "stream", s.streams, s.stream_tokens, headers)
                        out[target]["stream"].append(rate)
            return out
        finally:
            if litellm is not None:
                litellm.stop()
            pg.stop()


def report(out: dict, workers: int, s: Settings) -> None:
    p50 = {k: pct(v["seq"], 0.5) * 1000 for k, v in out.items()}
    p99 = {k: pct(v["seq"], 0.99) * 1000 for k, v in out.items()}
    rate = {k: sorted(v["stream"])[len(v["stream"]) // 2] for k, v in out.items()}
    ideal = s.streams / TOKEN_S
    print(f"  gateway workers: {workers} (gateway_workers({os.cpu_count()}) cores)")
    print(f"  {'target':9} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'chunks/s':>9} {'x direct':>9}")
    for k in out:
        print(
            f"  {k:9} {p50[k]:8.2f} {p99[k]:8.2f} {p50[k] - p50['direct']:10.2f} {rate[k]:9.0f} "
            f"{rate[k] / rate['direct']:9.2f}"
        )
    print(f"  streams: {s.streams} at {TOKEN_S * 1000:g} ms/token (ideal {ideal:.0f} chunks/s)")
    print(
        f"  gateway adds {p50['gateway'] - p50['switcher']:.1f} ms p50 over the switcher "
        f"({p50['gateway'] / p50['switcher']:.1f}x its latency); streams at "
        f"{rate['gateway'] / rate['switcher']:.2f}x the switcher's chunk rate"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (make bench)")
    parser.add_argument("--workers", type=int, default=0, help="LiteLLM workers (0: the role's rule)")
    args = parser.parse_args()
    missing = litellm_missing()
    if missing:
        print(f"  skipped: {missing}")
        return
    workers = args.workers or gateway_workers(os.cpu_count() or 1)
    s = Settings.make(args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        out = asyncio.run(measure(s, Path(tmp), workers))
    report(out, workers, s)


if __name__ == "__main__":
    main()
