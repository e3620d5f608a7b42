"""What the switcher knows about each model: its state, its queue, its engine. Types only, no I/O."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from .config import ModelSpec
from .engine import EngineClient


class ModelState(StrEnum):
    COLD = "cold"  # no engine answers (not started, restarting, or gone)
    STARTING = "starting"  # holds the boot grant; loading, will be slept once ready
    AWAKE = "awake"  # serving; requests are forwarded
    SLEEPING = "sleeping"  # engine up, weights offloaded (L1) or discarded (L2); requests queue
    FAILED = "failed"  # last wake/sleep/boot failed; see reason; retried with backoff


class Unavailable(Exception):
    """A request cannot be served now; answered as 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int, code: str = "model_unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, retry_after)
        self.code = code


@dataclass(slots=True)
class Waiter:
    future: asyncio.Future[None]
    since: float


class ModelRuntime:
    """Everything the switcher knows about one model and its engine."""

    def __init__(
        self, spec: ModelSpec, engine: EngineClient, share: float, residual: float, level: int
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.engine = engine
        self.share = share
        self.residual = residual
        self.level = level  # sleep level we use for this model
        self.state = ModelState.COLD
        self.reason: str | None = "not probed yet"
        self.use = 0.0  # VRAM the engine holds now, as far as we know
        self.version = 0  # bumped on each transition; stale probe results are dropped
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.queue: deque[Waiter] = deque()
        self.draining = False
        self.cordoned = False
        self.awake_since = 0.0
        self.last_used = 0.0
        self.slept_level: int | None = None
        self.failures = 0
        self.blocked_until = 0.0
        self.block_reason: str | None = None
        self.last_error: str | None = None
        # Measured durations of this engine's sleep and wake (running averages); None until measured.
        self.sleep_seconds: float | None = None
        self.wake_seconds: float | None = None
