"""What an operator can do through the admin API: wake a model now, put it to sleep, drain it, and
read everything the switcher knows about it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from .planner import plan_room
from .state import ModelRuntime, ModelState
from .transitions import Transitions


class AdminOperations(Transitions):
    async def activate(self, m: ModelRuntime) -> tuple[bool, str]:
        """Wake a model now, ignoring residencies (an operator asked). Returns (ok, message)."""
        m.cordoned = False
        async with self._lock:
            if m.state is ModelState.AWAKE:
                self._release_queue(m)
                return True, "already awake"
            if m.state not in (ModelState.SLEEPING, ModelState.FAILED):
                return False, f"cannot wake a model in state {m.state}: its engine is not up"
            m.blocked_until = 0.0
            plan = plan_room(m.name, self._holders(time.monotonic(), ignore_residency=True), self.capacity, 0)
            if plan.impossible:
                return False, plan.impossible
            ok = await self._switch(m, plan.victims)
        self.kick()
        return ok, "awake" if ok else f"activation failed: {m.last_error or m.block_reason}"

    async def sleep(self, m: ModelRuntime) -> tuple[bool, str]:
        async with self._lock:
            if m.state is ModelState.SLEEPING:
                return True, "already sleeping"
            if m.state is not ModelState.AWAKE:
                return False, f"cannot sleep a model in state {m.state}"
            error = await self._sleep_now(m, "admin")
        return error is None, error or "sleeping"

    async def drain(self, m: ModelRuntime, wait_seconds: float) -> dict[str, Any]:
        """Stop admitting requests for a model (they get 503) and wait for in-flight ones to end."""
        m.cordoned = True
        self._refuse_waiters(m, f"model {m.name} is drained by an operator", self.policy.retry_after_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await m.idle.wait()
        return {"model": m.name, "drained": m.inflight == 0, "inflight": m.inflight}

    def describe(self, m: ModelRuntime) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "name": m.name,
            "served_name": m.spec.engine_model_name,
            "aliases": list(m.spec.aliases),
            "state": str(m.state),
            "reason": m.reason,
            "inflight": m.inflight,
            "queued": len(m.queue),
            "draining": m.draining and m.state is ModelState.AWAKE,  # a slept victim drains no more
            "cordoned": m.cordoned,
            "awake_for_seconds": round(now - m.awake_since, 3) if m.state is ModelState.AWAKE else None,
            "idle_for_seconds": round(now - m.last_used, 3) if m.last_used else None,
            "vram_in_use": m.use,
            "vram_when_awake": m.share,
            "sleep_seconds_measured": None if m.sleep_seconds is None else round(m.sleep_seconds, 3),
            "wake_seconds_measured": None if m.wake_seconds is None else round(m.wake_seconds, 3),
            "priority": m.spec.priority,
            "failures": m.failures,
            "retry_in_seconds": round(m.blocked_until - now, 3) if m.blocked_until > now else None,
            "last_error": m.last_error,
        }
