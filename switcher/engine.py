"""Control calls to one vLLM engine: health, sleep state, sleep, wake, prefix-cache reset.

These are vLLM's dev-mode routes (``VLLM_SERVER_DEV_MODE=1``, ``--enable-sleep-mode``). Every call
has a deadline, and every failure raises ``EngineError`` with a message a person can act on
(method, URL, status or network error).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import aiohttp

# vllm:engine_sleep_state{...,sleep_state="weights_offloaded"} 1.0  -> level 1; discard_all -> level 2
_SLEEP_STATE = re.compile(r'^vllm:engine_sleep_state\{[^}]*sleep_state="(\w+)"[^}]*\}\s+([0-9.eE+-]+)', re.M)


class EngineError(Exception):
    """A control call to an engine failed or timed out."""


class EngineUnreachable(EngineError):
    """The engine did not accept a connection: no process (cold, restarting) or network trouble."""


class EngineClient:
    def __init__(self, base_url: str, probe_timeout: float, session: aiohttp.ClientSession | None = None):
        self.session: aiohttp.ClientSession = session  # type: ignore[assignment]  # set by Manager.start
        self.base_url = base_url
        self.probe_timeout = probe_timeout

    async def _call(
        self, method: str, path: str, seconds: float, payload: object | None = None
    ) -> tuple[int, bytes]:
        url = self.base_url + path
        try:
            async with self.session.request(
                method, url, json=payload, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as resp:
                body = await resp.read()
                return resp.status, body
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionError) as exc:
            raise EngineUnreachable(f"{method} {url}: engine unreachable ({exc})") from None
        except TimeoutError:
            raise EngineError(f"{method} {url}: no answer within {seconds:g}s") from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from None

    async def _ok(self, method: str, path: str, seconds: float, payload: object | None = None) -> bytes:
        status, body = await self._call(method, path, seconds, payload)
        if status >= 300:
            text = body[:300].decode(errors="replace")
            raise EngineError(f"{method} {self.base_url}{path}: HTTP {status}: {text}")
        return body

    async def health(self) -> bool:
        try:
            status, _ = await self._call("GET", "/health", self.probe_timeout)
        except EngineError:
            return False
        return status == 200

    async def is_sleeping(self, seconds: float | None = None) -> bool:
        body = await self._ok("GET", "/is_sleeping", seconds or self.probe_timeout)
        try:
            return bool(json.loads(body)["is_sleeping"])
        except (ValueError, KeyError, TypeError):
            raise EngineError(
                f"GET {self.base_url}/is_sleeping: unexpected answer {body[:200]!r}; is "
                "VLLM_SERVER_DEV_MODE=1 set on the engine?"
            ) from None

    async def sleep_level(self) -> int | None:
        """The level the engine sleeps at, from ``vllm:engine_sleep_state``; None if unknown."""
        try:
            body = await self._ok("GET", "/metrics", self.probe_timeout)
        except EngineError:
            return None
        states = {name: float(value) for name, value in _SLEEP_STATE.findall(body.decode(errors="replace"))}
        if states.get("discard_all", 0) > 0:
            return 2
        if states.get("weights_offloaded", 0) > 0:
            return 1
        return None

    async def _wait_sleeping(self, want: bool, deadline: float) -> None:
        # /sleep may answer before the engine is done (vLLM notes this for some builds): confirm.
        delay = 0.01
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineError(
                    f"{self.base_url}: engine did not report is_sleeping={str(want).lower()} in time"
                )
            if await self.is_sleeping(min(self.probe_timeout, remaining)) == want:
                return
            await asyncio.sleep(min(delay, max(remaining, 0)))
            delay = min(delay * 2, 0.5)

    async def sleep(self, level: int, seconds: float, mode: str | None = None) -> None:
        """``POST /sleep?level=N`` (query parameter: vLLM ignores a JSON body), then confirm."""
        deadline = time.monotonic() + seconds
        query = f"/sleep?level={level}" + (f"&mode={mode}" if mode else "")
        await self._ok("POST", query, seconds)
        await self._wait_sleeping(True, deadline)

    async def wake(self, level: int, seconds: float) -> None:
        """Wake, reset the prefix cache (stale after a sleep), confirm awake.

        Level 2 discarded the weights: wake the weight memory, reload weights into it, then the KV
        cache, in that order so the KV cache is sized after the weights are in place.
        """
        deadline = time.monotonic() + seconds

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EngineError(f"{self.base_url}: wake did not finish within {seconds:g}s")
            return remaining

        if level == 2:
            await self._ok("POST", "/wake_up?tags=weights", left())
            await self._ok("POST", "/collective_rpc", left(), payload={"method": "reload_weights"})
            await self._ok("POST", "/wake_up?tags=kv_cache", left())
        else:
            await self._ok("POST", "/wake_up", left())
        await self._reset_prefix_cache(left)
        await self._wait_sleeping(False, deadline)

    async def _reset_prefix_cache(self, left: Callable[[], float]) -> None:
        """``POST /reset_prefix_cache`` until it reports success, within the wake's deadline.

        vLLM 0.32 answers HTTP 200 with ``{"success": false}`` while blocks are still held; an answer
        without that field (newer builds answer a bare 200) counts as done.
        """
        delay = 0.01
        while True:
            body = await self._ok("POST", "/reset_prefix_cache", left())
            try:
                answer = json.loads(body) if body.strip() else None
            except ValueError:
                answer = None
            if not (isinstance(answer, dict) and answer.get("success") is False):
                return
            remaining = left()
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)
