"""The control client against one stand-in engine: sleep levels, confirmations, errors."""

from __future__ import annotations

import aiohttp
import pytest

from standins.vllm_engine import VllmEngineStandIn, VramLedger
from switcher.engine import EngineClient, EngineError, EngineUnreachable


@pytest.fixture
async def engine():
    e = VllmEngineStandIn("m", VramLedger(10), 10)
    await e.start()
    yield e
    await e.close()


async def test_sleep_level_is_read_from_vllm_metrics(engine):
    async with aiohttp.ClientSession() as session:
        client = EngineClient(engine.base_url, 1.0, session)
        assert await client.sleep_level() is None  # awake
        await client.sleep(2, 2.0)
        assert await client.is_sleeping() and await client.sleep_level() == 2
        await client.wake(2, 2.0)  # weights, reload_weights, kv_cache, reset_prefix_cache
        assert not engine.prefix_stale and engine.weights_valid and engine.stats.reloads == 1
        await client.sleep(1, 2.0)
        assert await client.sleep_level() == 1
        assert engine.ledger.held["m"] == 0.0


async def test_errors_name_the_call(engine):
    async with aiohttp.ClientSession() as session:
        client = EngineClient(engine.base_url, 0.3, session)
        await client.sleep(1, 2.0)
        engine.faults.fail_wakes = 1
        with pytest.raises(EngineError, match=r"POST http://127\.0\.0\.1:\d+/wake_up: HTTP 500"):
            await client.wake(1, 2.0)
        engine.faults.hang_status = True
        with pytest.raises(EngineError, match=r"no answer within 0\.3s"):
            await client.is_sleeping()
        await engine.kill()
        with pytest.raises(EngineUnreachable):
            await client.is_sleeping()
        assert await client.health() is False
