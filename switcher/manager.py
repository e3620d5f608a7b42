"""The manager: which models hold the GPU, and the request path's door to them.

Concurrency model (one asyncio event loop):

- The request hot path never awaits anything when the model is awake: ``try_admit`` is a couple of
  attribute checks and a counter increment.
- Every transition that talks to an engine (drain, sleep, wake, boot grant, re-learning a state)
  runs under ``self._lock``: one switch at a time, as vLLM engines compete for the same VRAM.
- The scheduler task wakes on a kick (a request was queued, a boot was asked for, a state changed)
  or at a deadline (a residency ends, a batch window closes) and plans the next switch.
- The housekeeping task polls engine health, watches the boot grant and applies idle TTLs.

A request is admitted only while its model is ``awake`` and not draining, so no request is ever
forwarded to a sleeping engine (which would hang it).

The parts live in their own files (``core.py`` explains the layering); this one holds the request
path, start and stop, and the housekeeping task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

import aiohttp

from .admin_ops import AdminOperations
from .config import Config
from .decisions import backoff_seconds, public_reason
from .health import HealthPolling
from .idle import IdleTTL
from .metrics import Metrics
from .scheduling import Scheduling
from .state import ModelRuntime, ModelState, Unavailable, Waiter

__all__ = [
    "Manager",
    "ModelRuntime",
    "ModelState",
    "Unavailable",
    "Waiter",
    "backoff_seconds",
    "public_reason",
]

log = logging.getLogger("switcher")


class Manager(Scheduling, HealthPolling, IdleTTL, AdminOperations):
    def __init__(self, config: Config, metrics: Metrics) -> None:
        super().__init__(config, metrics)
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, control_session: aiohttp.ClientSession) -> None:
        for m in self.models.values():
            m.engine.session = control_session
        await self._health_poll(self.models.values(), initial=True)
        self.ready = True
        self._tasks = [
            asyncio.create_task(self._scheduler(), name="switcher-scheduler"),
            asyncio.create_task(self._housekeeping(), name="switcher-housekeeping"),
        ]
        self.kick()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for m in self.models.values():
            self._refuse_waiters(m, "the switcher is shutting down", self.policy.retry_after_seconds)

    # ------------------------------------------------------------------ request path

    def resolve(self, name: object) -> ModelRuntime | None:
        return self.routes.get(name) if isinstance(name, str) else None

    def try_admit(self, m: ModelRuntime) -> bool:
        """Admit a request without waiting if its model is awake. The hot path: keep it tiny."""
        if m.state is ModelState.AWAKE and not m.draining and not m.cordoned:
            self._admit(m)
            return True
        return False

    def release(self, m: ModelRuntime) -> None:
        m.inflight -= 1
        m.last_used = time.monotonic()
        if m.inflight == 0:
            m.idle.set()
            if any(o.queue for o in self.models.values()):
                self.kick()  # its demand may have ended: a waiting model may take the GPU now

    async def wait_admitted(self, m: ModelRuntime) -> None:
        """Queue until the model is awake and the request admitted, or raise ``Unavailable``."""
        now = time.monotonic()
        if m.cordoned:
            raise Unavailable(
                f"model {m.name} is drained by an operator; activate it to serve again",
                self.policy.retry_after_seconds,
            )
        if now < m.blocked_until:
            raise Unavailable(
                f"model {m.name} is unavailable: {m.block_reason}", math.ceil(m.blocked_until - now)
            )
        if len(m.queue) >= self.policy.queue_max_per_model:
            self.metrics.queue_rejected.labels(model=m.name).inc()
            raise Unavailable(
                f"model {m.name} has {len(m.queue)} requests waiting (queue_max_per_model); try again later",
                self.policy.retry_after_seconds,
                code="queue_full",
            )
        waiter = Waiter(asyncio.get_running_loop().create_future(), now)
        m.queue.append(waiter)
        self.kick()
        fut = waiter.future
        try:
            async with asyncio.timeout(self.policy.queue_timeout_seconds):
                await fut
        except TimeoutError:
            if _admitted(fut):
                return  # admitted in the same instant the timeout fired: serve it
            raise Unavailable(
                f"model {m.name} did not become available within {self.policy.queue_timeout_seconds:g}s "
                f"(state {m.state}{': ' + public_reason(m.reason) if m.reason else ''})",
                self.policy.retry_after_seconds,
                code="queue_timeout",
            ) from None
        except asyncio.CancelledError:
            if _admitted(fut):
                self.release(m)  # the client left between admission and resuming
            raise
        finally:
            with contextlib.suppress(ValueError):
                m.queue.remove(waiter)
            self.metrics.queue_wait.labels(model=m.name).observe(time.monotonic() - now)

    def report_engine_error(self, m: ModelRuntime) -> None:
        """The proxy could not reach an engine it believed awake: re-learn its state soon."""
        self._probe_soon(m)

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        tick = min(0.2, self.policy.health_interval_seconds / 2)
        next_health = time.monotonic() + self.policy.health_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._probe_now.wait()
            self._probe_now.clear()
            try:
                if self.grant is not None:
                    await self._check_boot()
                now = time.monotonic()
                if now >= next_health:
                    next_health = now + self.policy.health_interval_seconds
                    self._probe_requested.clear()
                    await self._health_poll(self.models.values())
                elif self._probe_requested:
                    names, self._probe_requested = self._probe_requested, set()
                    await self._health_poll(self.models[n] for n in names)
                await self._apply_idle_ttl()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping step failed")


def _admitted(fut: asyncio.Future[None]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None
