"""The manager's shared state and bookkeeping: models, routes, state changes, queues, back-off.

The manager is split by concern into layers over this one (``transitions.py`` drain/sleep/wake,
``boot.py`` boot grants, ``scheduling.py`` the scheduling loop, ``health.py`` health polling,
``idle.py`` idle TTL, ``admin_ops.py`` operator actions, ``manager.py`` the request path and the
tasks); each layer is a class the next one extends, and ``manager.Manager`` combines them. The
decisions themselves are pure functions in ``scheduler.py``, ``planner.py`` and ``decisions.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from functools import partial

from .config import Config, model_share_gib
from .decisions import backoff_seconds, public_reason, resident_use
from .engine import EngineClient
from .metrics import Metrics
from .planner import Holder
from .scheduler import PRIOR_SLEEP_SECONDS, PRIOR_WAKE_SECONDS, ModelView, Rules
from .scheduler import holders as scheduler_holders
from .state import ModelRuntime, ModelState, Unavailable

log = logging.getLogger("switcher")


class ManagerCore:
    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.policy = config.policy
        self.metrics = metrics
        if config.coresidency:
            assert config.policy.gpu_total_vram_gib is not None
            self.capacity = config.policy.gpu_total_vram_gib
            residual = config.policy.sleeping_residual_vram_gib
        else:
            self.capacity, residual = 1.0, 0.0
        self.models: dict[str, ModelRuntime] = {}
        self.routes: dict[str, ModelRuntime] = {}
        for spec in config.models:
            share = model_share_gib(spec, config.policy) if config.coresidency else 1.0
            engine = EngineClient(spec.base_url, config.policy.engine_probe_timeout_seconds)
            m = ModelRuntime(
                spec, engine, share, min(residual, share), spec.sleep_level or self.policy.sleep_level
            )
            self.models[m.name] = m
            self.routes[m.name] = m
            for alias in spec.aliases:
                self.routes[alias] = m
            metrics.add_model(m.name, m.state)
            metrics.queue_depth.labels(model=m.name).set_function(partial(_queued, m))
            metrics.inflight.labels(model=m.name).set_function(partial(_inflight, m))
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._probe_now = asyncio.Event()
        self._probe_requested: set[str] = set()
        self._next_deadline: float | None = None
        self.ready = False
        self.switching: str | None = None
        # Boot serialisation: one engine at a time holds the grant.
        self._boot_queue: list[str] = []
        self._boot_events: dict[str, asyncio.Event] = {}
        self.grant: str | None = None
        self.grant_at = 0.0
        self._restore_defaults = True

    def kick(self) -> None:
        self._kick.set()

    def _probe_soon(self, m: ModelRuntime) -> None:
        """Ask the housekeeping task to re-learn this engine's state now."""
        self._probe_requested.add(m.name)
        self._probe_now.set()

    def _admit(self, m: ModelRuntime) -> None:
        if m.inflight == 0:
            m.idle.clear()
        m.inflight += 1
        m.last_used = time.monotonic()

    def _set(
        self, m: ModelRuntime, state: ModelState, reason: str | None = None, use: float | None = None
    ) -> None:
        old = m.state
        now = time.monotonic()
        m.state = state
        m.reason = reason
        m.version += 1
        m.use = resident_use(state, m.share, m.residual, m.use) if use is None else use
        if state is ModelState.AWAKE:
            m.awake_since = now
            m.last_used = now
            m.draining = False
            m.slept_level = None
        self.metrics.set_state(m.name, state)
        if old is not state or reason:
            level = logging.WARNING if state is ModelState.FAILED else logging.INFO
            log.log(level, "model %s: %s -> %s%s", m.name, old, state, f" ({reason})" if reason else "")
        if state is ModelState.AWAKE:
            self._release_queue(m)

    def _holders(self, now: float, ignore_residency: bool = False) -> list[Holder]:
        return scheduler_holders(self._snapshot(now), self.rules, now, protect=not ignore_residency)

    @property
    def rules(self) -> Rules:
        p = self.policy
        return Rules(
            capacity=self.capacity,
            min_residency=p.min_residency_seconds,
            residency_cost_multiple=p.residency_switch_cost_multiple,
            demand_grace=p.demand_grace_seconds,
            batch_window=p.batch_window_seconds,
            # Past half its queue timeout a request's model goes next, so it is served before it expires.
            starvation_age=p.queue_timeout_seconds / 2,
        )

    def _snapshot(self, now: float) -> list[ModelView]:
        """What the scheduling policy decides on (switcher/scheduler.py)."""
        return [
            ModelView(
                name=m.name,
                awake=m.state is ModelState.AWAKE,
                wakeable=m.state in (ModelState.SLEEPING, ModelState.FAILED)
                and not m.cordoned
                and now >= m.blocked_until,
                use=m.use,
                share=m.share,
                residual=m.residual,
                priority=m.spec.priority,
                inflight=m.inflight,
                waiting=tuple(w.since for w in m.queue if not w.future.done()),
                awake_since=m.awake_since,
                last_used=m.last_used,
                sleep_cost=PRIOR_SLEEP_SECONDS if m.sleep_seconds is None else m.sleep_seconds,
                wake_cost=PRIOR_WAKE_SECONDS if m.wake_seconds is None else m.wake_seconds,
            )
            for m in self.models.values()
        ]

    def _release_queue(self, m: ModelRuntime) -> None:
        """Admit every waiter of an awake model at once: queued requests for a model go together."""
        if m.draining or m.cordoned:
            return
        while m.queue:
            waiter = m.queue.popleft()
            if not waiter.future.done():
                self._admit(m)
                waiter.future.set_result(None)

    def _refuse_waiters(
        self, m: ModelRuntime, message: str, retry_after: float, code: str = "model_unavailable"
    ) -> None:
        while m.queue:
            waiter = m.queue.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(Unavailable(message, math.ceil(retry_after), code))

    def _block(self, m: ModelRuntime, reason: str) -> None:
        """Back off after a failure: refuse this model's requests (503 + Retry-After) for a while."""
        m.failures += 1
        delay = backoff_seconds(
            m.failures, self.policy.retry_backoff_initial_seconds, self.policy.retry_backoff_max_seconds
        )
        m.blocked_until = time.monotonic() + delay
        m.block_reason = public_reason(reason)  # clients see this; the admin API the whole reason
        m.last_error = reason
        self._refuse_waiters(m, f"model {m.name} is unavailable: {m.block_reason}", delay)
        self._defer(m.blocked_until)

    def _defer(self, when: float) -> None:
        if self._next_deadline is None or when < self._next_deadline:
            self._next_deadline = when


def _queued(m: ModelRuntime) -> float:
    return len(m.queue)


def _inflight(m: ModelRuntime) -> float:
    return m.inflight
