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
                m.engine.sleep_level() if r == "sleeping" and _level_wanted(m) else _none()
                for m, r in zip(targets, results, strict=True)
            )
        )
        changed = False
        async with self._lock:
            for m, version, result, level in zip(targets, versions, results, levels, strict=True):
                if m.version != version or result is None:
                    continue  # something changed while we probed: that transition knows better
                use_before = m.use
                changed |= self._apply_probe(m, result, level, initial)
                if m.use != use_before:
                    # A failed model's memory can be freed during its back-off, its state unchanged:
                    # a wake that waited for that memory may go ahead now.
                    changed = True
        if changed:
            self.kick()

    def _apply_probe(self, m: ModelRuntime, result: str, level: int | None, initial: bool) -> bool:
        # vLLM answers is_sleeping=true from the moment a sleep pauses it, and reports its sleep level
        # (vllm:engine_sleep_state) only once the memory is released: until then it holds its share.
        releasing = result == "sleeping" and level is None and _level_wanted(m)
        if m.state is ModelState.FAILED:
            m.use = m.share if releasing else probed_use(result, m.share, m.residual)
        if m.state is ModelState.SLEEPING and result == "sleeping" and m.use > m.residual and not releasing:
            log.info("model %s: its engine has released its memory (sleep level %s)", m.name, level)
            m.slept_level = level
            m.use = m.residual
            return True
        outcome = probe_outcome(m.state, result, initial, backed_off=time.monotonic() < m.blocked_until)
        if outcome is None:
            return False
        if outcome.state is ModelState.SLEEPING:
            m.slept_level = level or m.slept_level
        use = 0.0 if outcome.state is ModelState.COLD else None
        if releasing and outcome.state is ModelState.SLEEPING:
            use = m.share
        self._set(m, outcome.state, outcome.note, use=use)
        return True


def _level_wanted(m: ModelRuntime) -> bool:
    """Whether a probe that finds the engine sleeping asks it for its sleep level: for a model not
    known to sleep, and for one that sleeps but is still counted at its share (releasing)."""
    return m.state is not ModelState.SLEEPING or m.use > m.residual


async def _none() -> None:
    return None
