"""Engine transitions: drain, sleep, wake, a whole switch, and the rollback of a failed one.

Every method here talks to engines and runs with the manager's lock held: one switch at a time, as
vLLM engines compete for the same VRAM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from .core import ManagerCore
from .engine import EngineError, EngineUnreachable
from .planner import fits
from .scheduler import ewma
from .state import ModelRuntime, ModelState

log = logging.getLogger("switcher")


class Transitions(ManagerCore):
    async def _drain(self, m: ModelRuntime) -> None:
        if m.inflight == 0:
            return
        try:
            async with asyncio.timeout(self.policy.drain_timeout_seconds):
                await m.idle.wait()
        except TimeoutError:
            self.metrics.drain_timeouts.labels(model=m.name).inc()
            log.warning(
                "model %s: %d requests still in flight after drain_timeout_seconds=%g; sleeping anyway",
                m.name,
                m.inflight,
                self.policy.drain_timeout_seconds,
            )

    async def _sleep_model(self, m: ModelRuntime, reason: str) -> str | None:
        """Put an (already drained) awake model to sleep. Returns an error message or None."""
        level = m.level
        started = time.monotonic()
        try:
            await m.engine.sleep(level, self.policy.sleep_timeout_seconds, self.policy.sleep_mode)
        except EngineError as exc:
            error = f"sleep failed: {exc}"
            m.last_error = error
            try:
                sleeping = await m.engine.is_sleeping()
                if sleeping:
                    # vLLM reports sleeping from the moment it pauses, before its memory is released
                    # (0.32: EngineCore.is_sleeping), so that is no proof of free VRAM. A repeated
                    # /sleep is answered once the first one is done: until then, count it held.
                    await m.engine.sleep(level, self.policy.sleep_timeout_seconds, self.policy.sleep_mode)
            except EngineError as probe_exc:
                # Unknown: assume it still holds its VRAM so nothing is woken on top of it.
                self._set(m, ModelState.FAILED, f"{error}; then {probe_exc}", use=m.share)
                self._block(m, error)
                return error
            if sleeping:  # it got there late: fine
                m.slept_level = level
                self._set(m, ModelState.SLEEPING)
                self.metrics.sleeps.labels(model=m.name, reason=reason).inc()
                return None
            # Still awake and answering: keep serving it (the previous model stays usable).
            m.draining = False
            log.warning("model %s: %s; it is still awake and keeps serving", m.name, error)
            self._release_queue(m)
            return error
        m.sleep_seconds = ewma(m.sleep_seconds, time.monotonic() - started)
        m.slept_level = level
        self._set(m, ModelState.SLEEPING)
        self.metrics.sleeps.labels(model=m.name, reason=reason).inc()
        return None

    async def _wake_model(self, m: ModelRuntime) -> str | None:
        level = m.slept_level or (await m.engine.sleep_level() if m.state is not ModelState.AWAKE else None)
        level = level or m.level
        m.use = m.share  # count it as resident from the first byte it may allocate
        started = time.monotonic()
        try:
            await m.engine.wake(level, self.policy.wake_timeout_seconds)
        except EngineError as exc:
            error = f"wake failed: {exc}"
            use = await self._use_after_failed_wake(m, level)
            self._set(m, ModelState.FAILED, error, use=use)
            return error
        m.wake_seconds = ewma(m.wake_seconds, time.monotonic() - started)
        m.failures = 0
        m.blocked_until = 0.0
        m.block_reason = None
        self._set(m, ModelState.AWAKE)
        return None

    async def _use_after_failed_wake(self, m: ModelRuntime, level: int) -> float:
        """VRAM a model holds after a failed wake; put it back to sleep if it is half awake."""
        try:
            if await m.engine.is_sleeping():
                return m.residual
            await m.engine.sleep(level, self.policy.sleep_timeout_seconds, self.policy.sleep_mode)
            m.slept_level = level
            return m.residual
        except EngineUnreachable:
            return 0.0  # no process, no VRAM; the health poll will notice it coming back
        except EngineError:
            return m.share

    async def _make_room(self, victims: Iterable[str], reason: str = "switch") -> str | None:
        """Drain then sleep the victims. Returns an error message if any could not be slept."""
        vs = [self.models[name] for name in victims]
        if not vs:
            return None
        for v in vs:
            v.draining = True
        started = time.monotonic()
        await asyncio.gather(*(self._drain(v) for v in vs))
        slept = time.monotonic()
        self.metrics.switch_duration.labels(phase="drain").observe(slept - started)
        errors = await asyncio.gather(*(self._sleep_model(v, reason) for v in vs))
        self.metrics.switch_duration.labels(phase="sleep").observe(time.monotonic() - slept)
        problems = [f"{v.name}: {err}" for v, err in zip(vs, errors, strict=True) if err]
        return "; ".join(problems) or None

    async def _switch(self, target: ModelRuntime, victims: tuple[str, ...]) -> bool:
        """Drain and sleep the victims, wake the target, release its queue. Lock must be held."""
        started = time.monotonic()
        self.switching = target.name
        try:
            problem = await self._make_room(victims)
            if problem:
                reason = f"could not make room: {problem}"
                self._block(target, reason)
                self.metrics.switches.labels(model=target.name, outcome="failed").inc()
                return False
            woke = time.monotonic()
            error = await self._wake_model(target)
            self.metrics.switch_duration.labels(phase="wake").observe(time.monotonic() - woke)
            if error:
                self._block(target, error)
                self.metrics.switches.labels(model=target.name, outcome="failed").inc()
                await self._rollback(victims)
                return False
            self.metrics.switches.labels(model=target.name, outcome="success").inc()
            self.metrics.switch_duration.labels(phase="total").observe(time.monotonic() - started)
            return True
        finally:
            self.switching = None

    async def _rollback(self, victims: tuple[str, ...]) -> None:
        """After a failed wake, wake again the models slept for it, so the GPU keeps serving."""
        for name in victims:
            v = self.models[name]
            if v.state is ModelState.SLEEPING and fits(
                v.name, self._holders(time.monotonic()), self.capacity
            ):
                error = await self._wake_model(v)
                if error:
                    self._block(v, error)

    async def _sleep_now(self, m: ModelRuntime, reason: str) -> str | None:
        """Drain and sleep one awake model. Lock held."""
        if m.state is not ModelState.AWAKE:
            return None
        m.draining = True
        try:
            await self._drain(m)
            return await self._sleep_model(m, reason)
        finally:
            if m.state is ModelState.AWAKE:
                m.draining = False
                self._release_queue(m)
            self.kick()
