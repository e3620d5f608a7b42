"""Idle TTL: a model unused for its ``idle_ttl_seconds`` (and past its residency) is put to sleep."""

from __future__ import annotations

import time

from .decisions import idle_expired
from .state import ModelRuntime, ModelState
from .transitions import Transitions


class IdleTTL(Transitions):
    async def _apply_idle_ttl(self) -> None:
        now = time.monotonic()
        for m in self.models.values():
            ttl = m.spec.idle_ttl_seconds
            if ttl is None or not self._idle_expired(m, ttl, now):
                continue
            async with self._lock:
                if self._idle_expired(m, ttl, time.monotonic()):
                    await self._sleep_now(m, "idle_ttl")

    def _idle_expired(self, m: ModelRuntime, ttl: float, now: float) -> bool:
        return idle_expired(
            awake=m.state is ModelState.AWAKE,
            busy=m.inflight > 0 or bool(m.queue),
            idle_for=now - m.last_used,
            awake_for=now - m.awake_since,
            ttl=ttl,
            min_residency=self.policy.min_residency_seconds,
        )
