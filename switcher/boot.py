"""Boot grants: engines start one at a time (``GET /boot/<model>`` from each vLLM pod's init container).

After a reboot every engine wants its share of free VRAM at start; the switcher hands out one grant at
a time, and once the engine is ready it is put to sleep (unless wanted awake) and the next is granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from .decisions import boot_waits_for, keep_awake_after_boot
from .engine import EngineError
from .planner import plan_room
from .state import ModelRuntime, ModelState
from .transitions import Transitions

log = logging.getLogger("switcher")


class BootGrants(Transitions):
    async def request_boot(self, name: str, wait: float) -> tuple[bool, dict[str, Any]]:
        """An engine's init container asks to start. True once it holds the grant."""
        m = self.routes[name]
        if self.grant != m.name and m.name not in self._boot_queue:
            # Only an engine that is really restarting gets in line: one that answers is up, holds
            # its VRAM, and keeps its state (a caller cannot make the switcher forget it).
            if await m.engine.health():
                return False, {
                    **self.boot_status(m.name),
                    "reason": "the engine is answering: not restarting",
                }
            async with self._lock:
                if self.grant != m.name and m.name not in self._boot_queue:
                    # Its pod is (re)starting: whatever engine ran before is gone.
                    if m.state is not ModelState.COLD:
                        self._set(
                            m, ModelState.COLD, "engine is (re)starting: asked for a boot grant", use=0.0
                        )
                    self._boot_queue.append(m.name)
                    self._boot_events[m.name] = asyncio.Event()
            self.kick()
        event = self._boot_events.get(m.name)
        if self.grant != m.name and event is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await event.wait()
        return self.grant == m.name, self.boot_status(m.name)

    async def revoke_boot(self, m: ModelRuntime) -> tuple[bool, str]:
        """An operator takes back a boot grant (or a place in line): the model counts as cold again."""
        async with self._lock:
            if self.grant == m.name:
                self.grant = None
                message = "boot grant revoked"
            elif m.name in self._boot_queue:
                self._boot_queue.remove(m.name)
                message = "removed from the boot queue"
            else:
                return False, "holds no boot grant and is not waiting for one"
            event = self._boot_events.pop(m.name, None)
            if event is not None:
                event.set()  # a long-polling init container gets its (negative) answer now
            if m.state is ModelState.STARTING:
                self._set(m, ModelState.COLD, "boot grant revoked by an operator", use=0.0)
            self._restore_defaults = True
        self._probe_soon(m)
        self.kick()
        return True, message

    @property
    def boot_queue(self) -> list[str]:
        return list(self._boot_queue)

    def boot_status(self, name: str) -> dict[str, Any]:
        queue = self._boot_queue
        return {
            "model": name,
            "granted": self.grant == name,
            "holder": self.grant,
            "position": queue.index(name) + 1 if name in queue else None,
            "queue": list(queue),
        }

    async def _boot_step(self, now: float) -> bool:
        """Give the boot grant to the next engine, making room for it first. Lock held."""
        if self.grant is not None or not self._boot_queue:
            return False
        name = self._boot_queue[0]
        m = self.models[name]
        # A node must recover on its own: boots do not wait for residencies, but an engine that is
        # not up evicts nothing unless requests wait for it (decisions.boot_waits_for).
        plan = plan_room(name, self._holders(now, ignore_residency=True), self.capacity, now)
        busy = [v for v in plan.victims if self.models[v].inflight or self.models[v].queue]
        waits = boot_waits_for(
            impossible=plan.impossible, victims=plan.victims, busy=busy, wanted=bool(m.queue)
        )
        if waits:
            log.debug("boot of %s waits: %s", name, waits)
            self._defer(now + min(0.5, self.policy.health_interval_seconds))
            return False
        problem = await self._make_room(plan.victims)
        if problem:
            log.warning("boot of %s waits: could not make room: %s", name, problem)
            self._defer(time.monotonic() + self.policy.retry_backoff_initial_seconds)
            return False
        self._boot_queue.pop(0)
        self.grant = name
        self.grant_at = time.monotonic()
        self._set(m, ModelState.STARTING, "boot granted; waiting for the engine to become ready")
        self.metrics.boot_grants.labels(model=name).inc()
        self._boot_events.pop(name).set()
        self._probe_now.set()
        return True

    async def _check_boot(self) -> None:
        name = self.grant
        if name is None:
            return
        m = self.models[name]
        if time.monotonic() - self.grant_at > self.policy.boot_grant_timeout_seconds:
            async with self._lock:
                if self.grant == name:
                    reason = (
                        f"engine did not become ready within boot_grant_timeout_seconds="
                        f"{self.policy.boot_grant_timeout_seconds:g} of its boot grant"
                    )
                    self._set(m, ModelState.FAILED, reason, use=0.0)
                    self._block(m, reason)
                    self.grant = None
            self.kick()
            return
        if not await m.engine.health():
            return
        try:
            sleeping = await m.engine.is_sleeping()
        except EngineError:
            return
        async with self._lock:
            if self.grant != name:
                return
            if sleeping:
                m.slept_level = await m.engine.sleep_level()
                self._set(m, ModelState.SLEEPING, "ready (came up sleeping)")
            else:
                keep = keep_awake_after_boot(m.spec.awake_by_default, len(m.queue), len(self._boot_queue))
                if keep:
                    self._set(m, ModelState.AWAKE, "ready")
                else:
                    # Put to sleep at once for the next boot: the requests waiting for it stay queued
                    # for the wake after the boots (marked awake, it would admit them to an engine
                    # about to sleep), and new ones queue behind them.
                    waiting, m.queue = m.queue, deque()
                    self._set(m, ModelState.AWAKE, "ready")
                    m.queue, m.draining = waiting, True
                    await self._sleep_model(m, "boot")
                    m.draining = False
            self.grant = None
            self._restore_defaults = True
        self.kick()
