"""`python -m switcher --config FILE` as a process: serves, logs, and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import yaml
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


async def test_metrics_listen_moves_probes_and_metrics_off_the_request_port(tmp_path):
    engine = VllmEngineStandIn("m", VramLedger(10), 10)
    await engine.start()
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "switcher.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "metrics_listen": {"host": "127.0.0.1", "port": metrics_port},
                "models": [{"name": "m", "base_url": engine.base_url}],
            }
        )
    )
    proc = await switcher_process.start(config, asyncio.subprocess.DEVNULL)
    try:
        url, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:
            await switcher_process.wait_ready(session, metrics_url)
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
            async with session.get(metrics_url + "/metrics") as resp:
                assert resp.status == 200 and 'k3sllm_switcher_requests_total{code="200",model="m"} 1.0' in (
                    await resp.text()
                )
            for path in ("/metrics", "/healthz", "/readyz"):  # not on the request port
                async with session.get(url + path) as resp:
                    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
            async with session.post(metrics_url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 404  # and no model is reachable from the metrics port
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.close()
