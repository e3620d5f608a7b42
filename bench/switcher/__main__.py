"""Switcher benchmark: ``python -m bench.switcher [--quick]``.

Every server runs in its own process (stand-in engines, the real switcher, the floor proxy, the naive
switcher); the load generator is this process. Latency and throughput are measured in interleaved
rounds (direct, floor, switcher, direct, ...) so that drift of a shared machine hits all alike.

Targets (issue 5):
  added p50 latency through the switcher <= 1.5x the floor's (minimal aiohttp pass-through)
  requests/s at concurrency 16 >= 0.8x the floor's
  streaming chunk rate at 5 ms/token >= 0.98x direct
  switch overhead beyond the engine's own sleep + wake time < 50 ms
  requests/minute under a mixed-model load >= 1.5x a naive one-lock switcher
Prints PASS/MISS per target; with --strict exits 1 if any is missed. On a shared, loaded machine the
hot-path numbers are noisy (hence interleaving); the switch and mixed-load targets have wide margins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "standins" / "vllm_engine.py"
PY = sys.executable


@dataclass(frozen=True)
class Settings:
    rounds: int
    seq_requests: int  # per round and target, concurrency 1
    conc_seconds: float  # per round and target, concurrency 16
    stream_tokens: int
    streams: int
    switches: int
    mixed_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                rounds=3,
                seq_requests=150,
                conc_seconds=1.0,
                stream_tokens=150,
                streams=4,
                switches=6,
                mixed_seconds=6,
            )
        return cls(
            rounds=5,
            seq_requests=400,
            conc_seconds=2.5,
            stream_tokens=300,
            streams=8,
            switches=16,
            mixed_seconds=20,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def start_engines(procs, engines: dict[str, tuple[int, float]], capacity: float, *extra: str) -> None:
    args = [PY, str(STANDIN), "--capacity", str(capacity), *extra]
    for name, (port, vram) in engines.items():
        args += ["--engine", f"{name}={port}:{vram}"]
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    procs.append(p)
    line = p.stdout.readline() if p.stdout else ""
    if line.strip() != "ready":
        raise RuntimeError(f"stand-in engines did not start: {args}")


def start_module(procs, module: str, *args: str) -> None:
    procs.append(subprocess.Popen([PY, "-m", module, *args], cwd=REPO, stderr=subprocess.DEVNULL))


def start_switcher(procs, tmp: Path, models: list[dict], policy: dict) -> str:
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "log_level": "warning",
        "models": models,
        "policy": policy,
    }
    path = tmp / f"switcher-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    start_module(procs, "switcher", "--config", str(path))
    return f"http://127.0.0.1:{port}"


async def wait_ready(
    session: aiohttp.ClientSession, url: str, path: str = "/readyz", method: str = "GET"
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.request(method, url + path, json={"model": "x"}) as resp:
                if resp.status < 500 or path != "/readyz":
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def chat(model: str, max_tokens: int, stream: bool = False) -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


async def one(session: aiohttp.ClientSession, url: str, payload: dict) -> float:
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=payload) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
    return time.perf_counter() - started


async def sequential(session, url: str, model: str, n: int) -> list[float]:
    return [await one(session, url, chat(model, 1)) for _ in range(n)]


async def concurrent(
    session, url: str, model: str, seconds: float, workers: int = 16
) -> tuple[list[float], float]:
    stop = time.perf_counter() + seconds
    latencies: list[float] = []

    async def worker() -> None:
        while time.perf_counter() < stop:
            latencies.append(await one(session, url, chat(model, 1)))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, len(latencies) / (time.perf_counter() - started)


async def stream_rate(session, url: str, model: str, streams: int, tokens: int) -> float:
    """Chunks per second while streaming, summed over concurrent streams. Each stream's rate runs from
    its first chunk to its last, so connection set-up and time to first token (covered by the
    latency rows) do not dilute it."""

    async def one_stream() -> float:
        arrivals: list[float] = []
        async with session.post(url + "/v1/chat/completions", json=chat(model, tokens, stream=True)) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    arrivals.append(time.perf_counter())
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    return sum(await asyncio.gather(*(one_stream() for _ in range(streams))))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------------------------- phases


async def hot_path(s: Settings, tmp: Path) -> dict:
    """Latency, throughput and streaming: direct vs floor vs switcher, interleaved request by request
    (concurrency 1) or slice by slice (concurrency 16, streaming), so machine noise hits all alike."""
    fast_port, stream_port = free_port(), free_port()
    floor_fast, floor_stream = free_port(), free_port()
    with processes() as procs:
        start_engines(procs, {"fast": (fast_port, 10)}, 40, "--tokens", "1")
        start_engines(procs, {"stream": (stream_port, 10)}, 40, "--token-s", "0.005")
        start_module(
            procs,
            "bench.switcher.floor",
            "--port",
            str(floor_fast),
            "--upstream",
            f"http://127.0.0.1:{fast_port}",
        )
        start_module(
            procs,
            "bench.switcher.floor",
            "--port",
            str(floor_stream),
            "--upstream",
            f"http://127.0.0.1:{stream_port}",
        )
        models = [
            {"name": "fast", "base_url": f"http://127.0.0.1:{fast_port}", "vram_gib": 10},
            {"name": "stream", "base_url": f"http://127.0.0.1:{stream_port}", "vram_gib": 10},
        ]
        sw = start_switcher(procs, tmp, models, {"gpu_total_vram_gib": 40})
        urls = {
            "direct": (f"http://127.0.0.1:{fast_port}", f"http://127.0.0.1:{stream_port}"),
            "floor": (f"http://127.0.0.1:{floor_fast}", f"http://127.0.0.1:{floor_stream}"),
            "switcher": (sw, sw),
        }
        out: dict = {k: {"seq": [], "conc": [], "rps": [], "stream": []} for k in urls}
        rng = random.Random(1)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_ready(session, sw)
            for fast_url, stream_url in urls.values():
                await wait_ready(session, fast_url, "/v1/chat/completions", "POST")
                await wait_ready(session, stream_url, "/v1/chat/completions", "POST")
                await sequential(session, fast_url, "fast", 30)  # warm connections and code paths
            order = list(urls)
            for _ in range(s.rounds * s.seq_requests):
                rng.shuffle(order)
                for target in order:
                    out[target]["seq"].append(await one(session, urls[target][0], chat("fast", 1)))
            for _ in range(s.rounds * 4):
                rng.shuffle(order)
                for target in order:
                    lat, rps = await concurrent(session, urls[target][0], "fast", s.conc_seconds / 4)
                    out[target]["conc"] += lat
                    out[target]["rps"].append(rps)
            for _ in range(s.rounds * 2):
                rng.shuffle(order)
                for target in order:
                    rate = await stream_rate(
                        session, urls[target][1], "stream", s.streams, s.stream_tokens // 2
                    )
                    out[target]["stream"].append(rate)
    return out


async def switch_overhead(s: Settings, tmp: Path) -> dict:
    """Alternate two models so every request switches; subtract the engines' own sleep + wake time."""
    sleep_s, wake_s = 0.2, 0.2
    pa, pb = free_port(), free_port()
    with processes() as procs:
        start_engines(
            procs,
            {"a": (pa, 10), "b": (pb, 10)},
            10,
            "--start-asleep",
            "--sleep-s",
            str(sleep_s),
            "--wake-s",
            str(wake_s),
        )
        models = [
            {"name": "a", "base_url": f"http://127.0.0.1:{pa}"},
            {"name": "b", "base_url": f"http://127.0.0.1:{pb}"},
        ]
        sw = start_switcher(procs, tmp, models, {"min_residency_seconds": 0})
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, sw)
            await one(session, sw, chat("a", 1))
            switching, steady = [], []
            for i in range(s.switches):
                model = "b" if i % 2 == 0 else "a"
                switching.append(await one(session, sw, chat(model, 1)))
                steady.append(await one(session, sw, chat(model, 1)))
            async with session.get(sw + "/metrics") as resp:
                metrics = await resp.text()
    overheads = [sw_t - st_t - sleep_s - wake_s for sw_t, st_t in zip(switching, steady, strict=True)]
    total_sum = _sample(metrics, 'k3sllm_switcher_switch_duration_seconds_sum{phase="total"}')
    total_count = _sample(metrics, 'k3sllm_switcher_switch_duration_seconds_count{phase="total"}')
    return {
        "client_overhead_ms": statistics.median(overheads) * 1000,
        "client_overhead_p90_ms": pct(overheads, 0.9) * 1000,
        "metric_overhead_ms": (total_sum / total_count - sleep_s - wake_s) * 1000
        if total_count
        else float("nan"),
    }


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def mixed_load(s: Settings, tmp: Path) -> dict:
    """Random mix of 4 models, 32 clients: requests per minute, switcher vs naive one-lock switcher."""
    names = ["m0", "m1", "m2", "m3"]
    engine_args = (
        "--start-asleep",
        "--sleep-s",
        "0.1",
        "--wake-s",
        "0.1",
        "--token-s",
        "0.005",
        "--tokens",
        "8",
    )
    results = {}
    for system in ("naive", "switcher"):
        ports = {n: free_port() for n in names}
        with processes() as procs:
            start_engines(procs, {n: (p, 10) for n, p in ports.items()}, 10, *engine_args)
            if system == "switcher":
                models = [{"name": n, "base_url": f"http://127.0.0.1:{p}"} for n, p in ports.items()]
                url = start_switcher(
                    procs, tmp, models, {"min_residency_seconds": 1.0, "queue_max_per_model": 1000}
                )
            else:
                port = free_port()
                start_module(
                    procs,
                    "bench.switcher.naive",
                    "--port",
                    str(port),
                    *[f"--model={n}=http://127.0.0.1:{p}" for n, p in ports.items()],
                )
                url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                if system == "switcher":
                    await wait_ready(session, url)
                else:
                    await wait_ready(session, url, "/v1/chat/completions", "POST")
                rng = random.Random(7)
                stop = time.perf_counter() + s.mixed_seconds

                started = time.perf_counter()
                counts = await asyncio.gather(
                    *(_mixed_client(session, url, names, rng, stop) for _ in range(32))
                )
                elapsed = time.perf_counter() - started
        done, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
        results[system] = {"per_minute": done / elapsed * 60, "failed": failed}
    return results


async def _mixed_client(
    session, url: str, names: list[str], rng: random.Random, stop: float
) -> tuple[int, int]:
    done = failed = 0
    while time.perf_counter() < stop:
        try:
            await one(session, url, chat(rng.choice(names), 8))
            done += 1
        except (RuntimeError, aiohttp.ClientError):
            failed += 1
    return done, failed


# ---------------------------------------------------------------------------------------- report


def report(hot: dict, overhead: dict, mixed: dict) -> bool:
    ms = 1000
    p50 = {k: statistics.median(v["seq"]) * ms for k, v in hot.items()}
    p99 = {k: pct(v["seq"], 0.99) * ms for k, v in hot.items()}
    c50 = {k: statistics.median(v["conc"]) * ms for k, v in hot.items()}
    c99 = {k: pct(v["conc"], 0.99) * ms for k, v in hot.items()}
    rps = {k: statistics.median(v["rps"]) for k, v in hot.items()}
    chunks = {k: statistics.median(v["stream"]) for k, v in hot.items()}
    # Paired per round (all three measured back to back), so slow phases of the machine cancel out.
    stream_ratio = statistics.median(
        sw / d for sw, d in zip(hot["switcher"]["stream"], hot["direct"]["stream"], strict=True)
    )
    added = {k: p50[k] - p50["direct"] for k in ("floor", "switcher")}
    added99 = {k: p99[k] - p99["direct"] for k in ("floor", "switcher")}
    added_c = {k: c50[k] - c50["direct"] for k in ("floor", "switcher")}

    rows = [
        ("p50 latency c=1 (ms)", p50["direct"], p50["floor"], p50["switcher"], None, None),
        ("p99 latency c=1 (ms)", p99["direct"], p99["floor"], p99["switcher"], None, None),
        (
            "added p50 c=1 (ms)",
            None,
            added["floor"],
            added["switcher"],
            added["switcher"] / added["floor"],
            ("<=", 1.5),
        ),
        (
            "added p99 c=1 (ms)",
            None,
            added99["floor"],
            added99["switcher"],
            added99["switcher"] / added99["floor"],
            None,
        ),
        ("p50 latency c=16 (ms)", c50["direct"], c50["floor"], c50["switcher"], None, None),
        ("p99 latency c=16 (ms)", c99["direct"], c99["floor"], c99["switcher"], None, None),
        (
            "added p50 c=16 (ms)",
            None,
            added_c["floor"],
            added_c["switcher"],
            added_c["switcher"] / added_c["floor"],
            None,
        ),
        (
            "requests/s c=16",
            rps["direct"],
            rps["floor"],
            rps["switcher"],
            rps["switcher"] / rps["floor"],
            (">=", 0.8),
        ),
        (
            "stream chunks/s, 5 ms/token",
            chunks["direct"],
            chunks["floor"],
            chunks["switcher"],
            stream_ratio,
            (">=", 0.98),
        ),
    ]
    ok = True
    print()
    print(f"{'metric':34} {'direct':>10} {'floor':>10} {'switcher':>10} {'ratio':>8}  target   result")
    for label, dv, fv, sv, ratio, target in rows:
        cells = [f"{v:10.2f}" if v is not None else f"{'':>10}" for v in (dv, fv, sv)]
        ratio_s = f"{ratio:8.3f}" if ratio is not None else f"{'':>8}"
        verdict = ""
        if target is not None and ratio is not None:
            op, bound = target
            passed = ratio <= bound if op == "<=" else ratio >= bound
            ok &= passed
            verdict = f"{op} {bound:<5} {'PASS' if passed else 'MISS'}"
        print(f"{label:34} {' '.join(cells)} {ratio_s}  {verdict}")
    print(
        "  (ratios: added latency switcher/floor; requests/s switcher/floor; chunks/s switcher/direct as the\n"
        f"   median of per-round ratios; ratio of the medians {chunks['switcher'] / chunks['direct']:.3f},"
        f" floor/direct {chunks['floor'] / chunks['direct']:.3f})"
    )
    print()
    o = overhead["client_overhead_ms"]
    passed = o < 50
    ok &= passed
    print(
        f"switch overhead beyond engine sleep+wake: median {o:.1f} ms, p90 {overhead['client_overhead_p90_ms']:.1f} ms "
        f"(from switcher metrics: {overhead['metric_overhead_ms']:.1f} ms)   target < 50 ms   {'PASS' if passed else 'MISS'}"
    )
    naive, ours = mixed["naive"], mixed["switcher"]
    ratio = ours["per_minute"] / naive["per_minute"] if naive["per_minute"] else float("inf")
    passed = ratio >= 1.5 and ours["failed"] == 0
    ok &= passed
    print(
        f"mixed-model load (4 models, 32 clients): switcher {ours['per_minute']:.0f} req/min "
        f"({ours['failed']} failed) vs naive one-lock {naive['per_minute']:.0f} req/min ({naive['failed']} failed): "
        f"{ratio:.2f}x   target >= 1.5x   {'PASS' if passed else 'MISS'}"
    )
    return ok


async def run(quick: bool, strict: bool) -> int:
    s = Settings.make(quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"switcher benchmark ({'quick' if quick else 'full'}): hot path ...", flush=True)
        hot = await hot_path(s, tmp)
        print("switch overhead ...", flush=True)
        overhead = await switch_overhead(s, tmp)
        print("mixed-model load ...", flush=True)
        mixed = await mixed_load(s, tmp)
    ok = report(hot, overhead, mixed)
    print(
        f"\nbenchmark took {time.monotonic() - started:.0f} s; {'all targets met' if ok else 'some targets MISSED'}"
    )
    if not quick:
        print(json.dumps({"overhead": overhead, "mixed": mixed}, indent=1))
    return 0 if ok or not strict else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run for CI (under a minute)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.quick, args.strict)))


if __name__ == "__main__":
    main()
