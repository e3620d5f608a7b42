"""Switcher benchmark: ``python -m bench.switcher [--quick]``.

Every server runs in its own process (stand-in engines, the real switcher, the floor proxy, the naive
switcher); the load generator is this process. Latency and throughput are measured in interleaved
rounds (direct, floor, switcher, direct, ...) so that drift of a shared machine hits all alike.

Targets (issues 5 and 14):
  added p50 latency through the switcher <= 1.5x the floor's (minimal aiohttp pass-through)
  requests/s at concurrency 16 >= 0.8x the floor's
  streaming chunk rate at 5 ms/token >= 0.98x direct
Scheduling, with the policy of inventories/example/group_vars/all/switcher.yml as the role renders it
(stand-in engines that sleep in 0.3 s and wake in 0.35 s, VRAM booked on one shared ledger):
  (a) one user alternating between two models that do not fit together: median latency <= 1.2x the
      engines' own sleep + wake
  (b) 12 closed-loop clients, 3 models (50 + 50 + 30 GiB on 80), half the requests for the first:
      completed requests >= 1.5x a naive one-lock switcher's, p99 no worse, 0 failed, 0 over-commit
  (c) two models with steady demand each: at most one switch per residency period
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
    steady_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                rounds=3,
                seq_requests=150,
                conc_seconds=1.0,
                stream_tokens=150,
                streams=4,
                switches=8,
                mixed_seconds=8,
                steady_seconds=16,
            )
        return cls(
            rounds=5,
            seq_requests=400,
            conc_seconds=2.5,
            stream_tokens=300,
            streams=8,
            switches=20,
            mixed_seconds=30,
            steady_seconds=60,
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


# The engines' own sleep and wake times in the scheduling scenarios (the issue's measured 0.65 s).
ENGINE_SLEEP_S, ENGINE_WAKE_S = 0.3, 0.35
INVENTORY = REPO / "inventories" / "example" / "group_vars" / "all"


def inventory_policy(gpu_gib: float | None = None) -> dict:
    """The example inventory's switcher policy, completed as roles/model_switcher completes it."""
    switcher = yaml.safe_load((INVENTORY / "switcher.yml").read_text())
    models = yaml.safe_load((INVENTORY / "models.yml").read_text())
    role = yaml.safe_load((REPO / "roles" / "k3sllm" / "defaults" / "main.yml").read_text())
    policy = dict(switcher["model_switcher_policy"])
    policy["sleep_level"] = models.get("k3sllm_sleep_level", role["k3sllm_sleep_level"])
    policy["sleeping_residual_vram_gib"] = models.get(
        "k3sllm_sleeping_vram_gib", role["k3sllm_sleeping_vram_gib"]
    )
    if gpu_gib is not None:
        policy["gpu_total_vram_gib"] = gpu_gib
    return policy


def residency_period(policy: dict) -> float:
    """The time slice the policy gives a model with demand, for the stand-ins' sleep + wake."""
    return max(
        policy.get("min_residency_seconds", 30.0),
        policy.get("residency_switch_cost_multiple", 4.0) * (ENGINE_SLEEP_S + ENGINE_WAKE_S),
    )


def engine_timing_args(residual: float, token_s: float = 0.0, tokens: int = 8) -> tuple[str, ...]:
    return (
        "--start-asleep",
        "--sleep-s",
        str(ENGINE_SLEEP_S),
        "--wake-s",
        str(ENGINE_WAKE_S),
        "--residual",
        str(residual),
        "--token-s",
        str(token_s),
        "--tokens",
        str(tokens),
    )


async def ledger(session, engine_url: str) -> dict:
    async with session.get(engine_url + "/standin/ledger") as resp:
        return await resp.json()


async def switches(session, url: str) -> float:
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("k3sllm_switcher_switches_total{") and 'outcome="success"' in line
    )


async def alternating(s: Settings, tmp: Path) -> dict:
    """(a) One user alternating between two models that do not fit together, one request at a time."""
    policy = inventory_policy(80)
    pa, pb = free_port(), free_port()
    with processes() as procs:
        residual = policy["sleeping_residual_vram_gib"]
        start_engines(procs, {"a": (pa, 50), "b": (pb, 50)}, 80, *engine_timing_args(residual, tokens=1))
        models = [
            {"name": "a", "base_url": f"http://127.0.0.1:{pa}", "vram_gib": 50},
            {"name": "b", "base_url": f"http://127.0.0.1:{pb}", "vram_gib": 50},
        ]
        sw = start_switcher(procs, tmp, models, policy)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, sw)
            await one(session, sw, chat("a", 1))
            latencies = [
                await one(session, sw, chat("b" if i % 2 == 0 else "a", 1)) for i in range(s.switches)
            ]
            gpu = await ledger(session, f"http://127.0.0.1:{pa}")
            count = await switches(session, sw)
    return {
        "median_s": statistics.median(latencies),
        "engine_s": ENGINE_SLEEP_S + ENGINE_WAKE_S,
        "switches": count,
        "requests": len(latencies),
        "overcommit": len(gpu["refusals"]) + (gpu["max_committed"] > gpu["capacity"] + 1e-9),
    }


async def mixed_load(s: Settings, tmp: Path) -> dict:
    """(b) 12 closed-loop clients, 3 models (50 + 50 + 30 GiB on 80), half the requests for the first:
    the inventory's policy against the naive one-lock switcher."""
    sizes = {"m0": 50, "m1": 50, "m2": 30}
    weights = [0.5, 0.25, 0.25]
    policy = inventory_policy(80)
    residual = policy["sleeping_residual_vram_gib"]
    results = {}
    for system in ("naive", "switcher"):
        ports = {n: free_port() for n in sizes}
        with processes() as procs:
            engines = {n: (p, sizes[n]) for n, p in ports.items()}
            start_engines(procs, engines, 80, *engine_timing_args(residual, token_s=0.005, tokens=8))
            if system == "switcher":
                models = [
                    {"name": n, "base_url": f"http://127.0.0.1:{p}", "vram_gib": sizes[n]}
                    for n, p in ports.items()
                ]
                url = start_switcher(procs, tmp, models, policy)
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
                outcomes = await asyncio.gather(
                    *(_mixed_client(session, url, list(sizes), weights, rng, stop) for _ in range(12))
                )
                elapsed = time.perf_counter() - started
                gpu = await ledger(session, f"http://127.0.0.1:{ports['m0']}")
                count = await switches(session, url) if system == "switcher" else float("nan")
        latencies = [x for lat, _ in outcomes for x in lat]
        results[system] = {
            "done": len(latencies),
            "failed": sum(f for _, f in outcomes),
            "p50_s": statistics.median(latencies) if latencies else float("nan"),
            "p99_s": pct(latencies, 0.99) if latencies else float("nan"),
            "switches_per_min": count / elapsed * 60,
            "overcommit": len(gpu["refusals"]) + (gpu["max_committed"] > gpu["capacity"] + 1e-9),
        }
    return results


async def _mixed_client(
    session, url: str, names: list[str], weights: list[float], rng: random.Random, stop: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    failed = 0
    while time.perf_counter() < stop:
        try:
            latencies.append(await one(session, url, chat(rng.choices(names, weights)[0], 8)))
        except (RuntimeError, aiohttp.ClientError):
            failed += 1
    return latencies, failed


async def steady_pair(s: Settings, tmp: Path) -> dict:
    """(c) Two models that do not fit together, each with steady demand (two closed-loop clients
    each): switches per minute against one switch per residency period. One round trip first lets the
    switcher measure both engines' sleep and wake (before that its prior costs, 2 + 3 s, make the
    slices longer), so the window shows the steady state."""
    policy = inventory_policy(80)
    residual = policy["sleeping_residual_vram_gib"]
    pa, pb = free_port(), free_port()
    with processes() as procs:
        start_engines(procs, {"a": (pa, 50), "b": (pb, 50)}, 80, *engine_timing_args(residual, 0.005, 8))
        models = [
            {"name": "a", "base_url": f"http://127.0.0.1:{pa}", "vram_gib": 50},
            {"name": "b", "base_url": f"http://127.0.0.1:{pb}", "vram_gib": 50},
        ]
        sw = start_switcher(procs, tmp, models, policy)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await wait_ready(session, sw)
            for model in ("b", "a"):
                await one(session, sw, chat(model, 1))
            before = await switches(session, sw)
            stop = time.perf_counter() + s.steady_seconds
            failed = 0

            async def client(model: str) -> int:
                done = 0
                while time.perf_counter() < stop:
                    await one(session, sw, chat(model, 8))
                    done += 1
                return done

            started = time.perf_counter()
            try:
                done = sum(await asyncio.gather(*(client(m) for m in ("a", "b", "a", "b"))))
            except (RuntimeError, aiohttp.ClientError):
                done, failed = 0, 1
            elapsed = time.perf_counter() - started
            count = await switches(session, sw) - before
    return {
        "switches_per_min": count / elapsed * 60,
        "period_s": residency_period(policy),
        "done": done,
        "failed": failed,
    }


# ---------------------------------------------------------------------------------------- report


def report(hot: dict, alt: dict, mixed: dict, steady: dict) -> bool:
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
    print(
        "scheduling, with the policy of inventories/example (stand-in engines: sleep + wake "
        f"{ENGINE_SLEEP_S + ENGINE_WAKE_S:.2f} s):"
    )

    def verdict(passed: bool) -> str:
        nonlocal ok
        ok &= passed
        return "PASS" if passed else "MISS"

    ratio = alt["median_s"] / alt["engine_s"]
    print(
        f"(a) one user alternating 2 models: median {alt['median_s']:.3f} s against the engines' sleep + wake "
        f"{alt['engine_s']:.3f} s (+{(alt['median_s'] - alt['engine_s']) * 1000:.0f} ms): {ratio:.2f}x   "
        "target <= 1.2x   "
        f"{verdict(ratio <= 1.2 and alt['overcommit'] == 0 and alt['switches'] >= alt['requests'])}"
    )
    naive, ours = mixed["naive"], mixed["switcher"]
    done_ratio = ours["done"] / naive["done"] if naive["done"] else float("inf")
    p99_ratio = ours["p99_s"] / naive["p99_s"]
    passed = done_ratio >= 1.5 and p99_ratio <= 1.0 and ours["failed"] == 0 and ours["overcommit"] == 0
    print(
        f"(b) 12 clients, 50+50+30 GiB on 80, half for one model: completed {ours['done']} against naive "
        f"{naive['done']}: {done_ratio:.2f}x (target >= 1.5x); p99 {ours['p99_s']:.2f} s against "
        f"{naive['p99_s']:.2f} s: {p99_ratio:.2f}x (target <= 1); failed {ours['failed']} (naive "
        f"{naive['failed']}), over-commit {ours['overcommit']} (naive {naive['overcommit']}); "
        f"{ours['switches_per_min']:.1f} switches/min   {verdict(passed)}"
    )
    per_period = steady["switches_per_min"] * steady["period_s"] / 60
    print(
        f"(c) 2 models with steady demand: {steady['switches_per_min']:.1f} switches/min, "
        f"{per_period:.2f} per residency period ({steady['period_s']:g} s)   target <= 1   "
        f"{verdict(per_period <= 1.0 and steady['failed'] == 0 and steady['done'] > 0)}"
    )
    return ok


async def run(quick: bool, strict: bool) -> int:
    s = Settings.make(quick)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"switcher benchmark ({'quick' if quick else 'full'}): hot path ...", flush=True)
        hot = await hot_path(s, tmp)
        print("(a) alternating ...", flush=True)
        alt = await alternating(s, tmp)
        print("(b) mixed load ...", flush=True)
        mixed = await mixed_load(s, tmp)
        print("(c) steady pair ...", flush=True)
        steady = await steady_pair(s, tmp)
    ok = report(hot, alt, mixed, steady)
    print(
        f"\nbenchmark took {time.monotonic() - started:.0f} s; {'all targets met' if ok else 'some targets MISSED'}"
    )
    if not quick:
        print(json.dumps({"alternating": alt, "mixed": mixed, "steady": steady}, indent=1))
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
