"""The switcher as a process stays within its memory limit (512Mi in the chart) under attack.

The switcher runs as ``python -m switcher`` in a subprocess; its peak RSS (``VmHWM``) is read from
/proc after: one 30 MB body (announced and chunked), many concurrent bodies at the size cap (text
and bracket-dense JSON), thousands of idle and half-sent connections. Meanwhile ``/healthz``
answers, and afterwards a normal request is served and the log stayed small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from k3sllm_testlib import free_port, switcher_process

from standins.vllm_engine import VllmEngineStandIn, VramLedger

pytestmark = pytest.mark.slow

MIB = 1024**2
MEMORY_LIMIT_MIB = 512  # roles/model_switcher: model_switcher_memory_limit


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


async def post_status(url: str, data, headers=None) -> int:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s,
            s.post(url, data=data, headers=headers) as resp,
        ):
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return -1  # the switcher closed the connection before reading the rest: also refused


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    port: int
    url: str
    stderr: Path
    sockets: list[socket.socket]  # the test's raw connections, closed at the end


@contextlib.asynccontextmanager
async def switcher_for_one_standin(tmp_path: Path, limits: dict, **options) -> AsyncIterator[Running]:
    """The switcher process, ready, for one stand-in engine ``m``; its stderr goes to a file.
    Afterwards the test's sockets are closed, the process is stopped and the engine closed."""
    engine = VllmEngineStandIn("m", VramLedger(10), 10)
    await engine.start()
    port = free_port()
    config = switcher_process.write_config(tmp_path / "switcher.yaml", port, engine.base_url, limits=limits)
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        proc = await switcher_process.start(config, err, **options)
    running = Running(proc, port, f"http://127.0.0.1:{port}", stderr, [])
    try:
        async with aiohttp.ClientSession() as session:
            await switcher_process.wait_ready(session, running.url)
        yield running
    finally:
        for s in running.sockets:
            s.close()
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        await engine.close()


async def test_memory_stays_within_the_limit_under_attack(tmp_path):
    async with switcher_for_one_standin(tmp_path, {"header_timeout_seconds": 20}) as running:
        url, sockets = running.url, running.sockets
        baseline = peak_rss_mib(running.proc.pid)
        chat = url + "/v1/chat/completions"

        # 1. One 30 MB body of empty objects (the body that used to OOM-kill the switcher).
        items = b"{}, " * (30 * MIB // 4)
        huge = b'{"model": "x", "x": [' + items + b"{}]}"
        assert await post_status(chat, huge) in (413, -1)

        async def chunked():
            yield b'{"model": "m", "x": ['
            for start in range(0, len(items), MIB):
                yield items[start : start + MIB]
            yield b"{}]}"

        assert await post_status(chat, chunked()) in (413, -1)
        del huge

        # 2. Many bodies at the cap at once: text (fast to scan) and bracket-dense JSON.
        text_body = json.dumps({"model": "nope", "prompt": "x" * (4 * MIB - 100)}).encode()
        dense = b'{"model": "nope", "x": [' + b"{}, " * ((4 * MIB - 100) // 4) + b"{}]}"
        assert len(text_body) <= 4 * MIB and len(dense) <= 4 * MIB
        statuses = await asyncio.gather(
            *(post_status(chat, text_body) for _ in range(48)), *(post_status(chat, dense) for _ in range(3))
        )
        # Unknown model (text), too many JSON elements (dense), or no room in the body budget.
        assert set(statuses[:48]) <= {404, 503} and set(statuses[48:]) <= {400, 503}, statuses
        assert statuses.count(404) >= 16

        # 3. Thousands of idle and half-sent connections; health keeps answering.
        await switcher_process.open_connections(running.port, 3000, sockets, half_request_every=3)
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    assert resp.status == 200
        for s in sockets:
            s.close()
        sockets.clear()

        # Still serving, within the limit, and the log did not flood.
        async with aiohttp.ClientSession() as session:
            for _ in range(50):  # closed connections are released asynchronously
                async with session.post(chat, json={"model": "m", "messages": []}) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
            assert resp.status == 200
        peak = peak_rss_mib(running.proc.pid)
        print(f"switcher RSS: {baseline:.0f} MiB at start, {peak:.0f} MiB peak under attack")
        assert peak < MEMORY_LIMIT_MIB * 0.75, f"peak RSS {peak:.0f} MiB (limit {MEMORY_LIMIT_MIB} MiB)"
        assert running.stderr.stat().st_size < 200_000
    assert "Traceback" not in running.stderr.read_text()


async def test_file_descriptor_limit_is_never_reached(tmp_path):
    """With few descriptors (256 here) the cap shrinks to fit them: a flood of connections gets
    old idle ones closed, never "Too many open files" in a loop, and /healthz keeps answering."""

    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    switcher = switcher_for_one_standin(tmp_path, {"max_connections": 1024}, preexec_fn=few_fds)
    async with switcher as running, aiohttp.ClientSession() as session:
        await switcher_process.open_connections(running.port, 600, running.sockets)
        await asyncio.sleep(1.0)
        for _ in range(5):
            async with session.get(running.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                assert resp.status == 200
        async with session.post(
            running.url + "/v1/chat/completions", json={"model": "m", "messages": []}
        ) as resp:
            assert resp.status == 200
    log = running.stderr.read_text()
    assert "limits.max_connections=1024 does not fit the file-descriptor limit 256; using 56" in log
    assert "Too many open files" not in log and len(log) < 20_000
