"""The scheduling loop: wakes on a kick or a deadline, asks the pure policy (``scheduler.decide``) for
the next step and carries it out: a boot grant, a switch, or an eviction to get within capacity."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .boot import BootGrants
from .planner import fits
from .scheduler import Decision, decide
from .state import ModelState

log = logging.getLogger("switcher")


class Scheduling(BootGrants):
    async def _scheduler(self) -> None:
        while True:
            timeout = (
                None if self._next_deadline is None else max(0.0, self._next_deadline - time.monotonic())
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._kick.wait()
            self._kick.clear()
            self._next_deadline = None
            try:
                async with self._lock:
                    await self._schedule()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep scheduling: one bad step must not stop the switcher
                log.exception("scheduler step failed")
                self._defer(time.monotonic() + 1.0)

    async def _schedule(self) -> None:
        while True:
            now = time.monotonic()
            for m in self.models.values():
                if m.queue:
                    if m.state is ModelState.AWAKE:
                        self._release_queue(m)
                    elif now < m.blocked_until:
                        self._refuse_waiters(
                            m, f"model {m.name} is unavailable: {m.block_reason}", m.blocked_until - now
                        )
            if await self._boot_step(now):
                continue
            decision = decide(self._snapshot(now), self.rules, now)
            if decision.target is None and decision.victims:
                if not await self._fit_capacity(decision):
                    return
                continue
            if decision.target is None:
                self._wait(decision, now)
                if self._restore_defaults and not self._boot_queue and self.grant is None:
                    await self._wake_defaults()
                return
            log.debug("switching to %s (%s)", decision.target, decision.why)
            await self._switch(self.models[decision.target], decision.victims)

    def _wait(self, decision: Decision, now: float) -> None:
        if decision.recheck_at is not None:
            self._defer(decision.recheck_at)
        if decision.blocked is not None:
            # Something holds VRAM that cannot be put to sleep now: an engine booting, or a failed
            # one. Both change state on their own; look again shortly (waiters are bounded).
            log.debug("waiting: %s", decision.blocked)
            self._defer(now + min(1.0, self.policy.health_interval_seconds))

    async def _fit_capacity(self, decision: Decision) -> bool:
        """The awake set holds more than the GPU (engines found awake together): sleep some now."""
        log.warning("putting %s to sleep: %s", ", ".join(decision.victims), decision.why)
        problem = await self._make_room(decision.victims, "over_capacity")
        if problem:
            log.warning("could not get within capacity: %s", problem)
            self._defer(time.monotonic() + self.policy.retry_backoff_initial_seconds)
            return False
        return True

    async def _wake_defaults(self) -> None:
        """After boots (and at start), wake the default-awake models that fit without evicting."""
        self._restore_defaults = False
        for m in sorted(self.models.values(), key=lambda m: -m.spec.priority):
            if not m.spec.awake_by_default or m.state is not ModelState.SLEEPING:
                continue
            if time.monotonic() < m.blocked_until:
                continue
            if fits(m.name, self._holders(time.monotonic()), self.capacity):
                await self._switch(m, ())
