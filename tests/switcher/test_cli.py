"""`python -m switcher --config FILE` as a process: serves, logs, and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from standins.vllm_engine import VllmEngineStandIn, VramLedger

REPO = Path(__file__).resolve().parents[2]


async def test_process_serves_and_stops_on_sigterm(tmp_path):
    engine = VllmEngineStandIn("m", VramLedger(10), 10)
    await engine.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "switcher.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "models": [{"name": "m", "base_url": engine.base_url}],
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switcher", "--config", str(config), cwd=REPO, stderr=asyncio.subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(url + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "switcher process did not become ready"
                    await asyncio.sleep(0.1)
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200 and (await resp.json())["model"] == "m"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        log = (await proc.stderr.read()).decode()
        assert "switcher listening on 127.0.0.1" in log and "shutting down" in log
        assert "model m: cold -> awake" in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.close()
