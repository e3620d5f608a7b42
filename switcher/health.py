"""Health polling: re-learn each engine's state (restart, external sleep or wake) from ``/is_sleeping``.

What a probe result means for a model is decided by ``decisions.probe_outcome`` (pure)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from .decisions import probe_outcome, probed_use
from .engine import EngineError, EngineUnreachable
from .state import ModelRuntime, ModelState
from .transitions import Transitions

log = logging.getLogger("switcher")


class HealthPolling(Transitions):
    async def _probe(self, m: ModelRuntime) -> str | None:
        try:
            return "sleeping" if await m.engine.is_sleeping() else "awake"
        except EngineUnreachable:
            return "gone"
        except EngineError as exc:
            log.debug("probe of %s failed: %s", m.name, exc)
            return None

    async def _health_poll(self, models: Iterable[ModelRuntime], initial: bool = False) -> None:
        """Re-learn engine states (restart, external sleep/wake) from ``/is_sleeping``."""
        targets = [m for m in models if m.name != self.grant and m.state is not ModelState.STARTING]
        versions = [m.version for m in targets]
        results = await asyncio.gather(*(self._probe(m) for m in targets))
        levels = await asyncio.gather(
            *(
                m.engine.sleep_level() if r == "sleeping" and m.state is not ModelState.SLEEPING else _none()
                for m, r in zip(targets, results, strict=True)
            )
        )
        changed = False
        async with self._lock:
            for m, version, result, level in zip(targets, versions, results, levels, strict=True):
                if m.version != version or result is None:
                    continue  # something changed while we probed: that transition knows better
                changed |= self._apply_probe(m, result, level, initial)
        if changed:
            self.kick()

    def _apply_probe(self, m: ModelRuntime, result: str, level: int | None, initial: bool) -> bool:
        if m.state is ModelState.FAILED:
            m.use = probed_use(result, m.share, m.residual)
        outcome = probe_outcome(m.state, result, initial, backed_off=time.monotonic() < m.blocked_until)
        if outcome is None:
            return False
        if outcome.state is ModelState.SLEEPING:
            m.slept_level = level or m.slept_level
        self._set(m, outcome.state, outcome.note, use=0.0 if outcome.state is ModelState.COLD else None)
        return True


async def _none() -> None:
    return None
