"""The switcher as users run it: ``python -m switcher --config FILE`` in a subprocess of the test."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from k3sllm_testlib import REPO


def write_config(path: Path, port: int, base_url: str, limits: dict | None = None) -> Path:
    """A config that listens on 127.0.0.1:``port`` for one model ``m`` served at ``base_url``."""
    config = {"listen": {"host": "127.0.0.1", "port": port}, "models": [{"name": "m", "base_url": base_url}]}
    if limits is not None:
        config["limits"] = limits
    path.write_text(yaml.safe_dump(config))
    return path


async def start(config: Path, stderr, **options) -> asyncio.subprocess.Process:
    """Start the switcher on ``config`` from the repository; ``options`` go to the subprocess."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switcher", "--config", str(config), cwd=REPO, stderr=stderr, **options
    )


async def wait_ready(session: aiohttp.ClientSession, url: str, seconds: float = 30) -> None:
    """Poll ``/readyz`` until it answers 200; fail once the switcher refused connections for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            async with session.get(url + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "switcher process did not become ready"
            await asyncio.sleep(0.1)


async def open_connections(
    port: int, count: int, into: list[socket.socket], half_request_every: int = 0
) -> None:
    """Open up to ``count`` connections to ``port`` and leave them idle, appending each to ``into``
    (the caller closes them). Every ``half_request_every``-th one also sends a request cut off
    mid-header. A connection the switcher refuses is skipped."""
    loop = asyncio.get_running_loop()
    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
            if half_request_every and i % half_request_every == 0:
                await loop.sock_sendall(s, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: ")
        except OSError:
            s.close()
            continue
        into.append(s)
