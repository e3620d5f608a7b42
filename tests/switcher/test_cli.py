"""`python -m switcher --config FILE` as a process: serves, logs, and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
from k3sllm_testlib import free_port, switcher_process

from standins.vllm_engine import VllmEngineStandIn, VramLedger


async def test_process_serves_and_stops_on_sigterm(tmp_path):
    engine = VllmEngineStandIn("m", VramLedger(10), 10)
    await engine.start()
    port = free_port()
    config = switcher_process.write_config(tmp_path / "switcher.yaml", port, engine.base_url)
    proc = await switcher_process.start(config, asyncio.subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            await switcher_process.wait_ready(session, url)
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
