"""Model states and the scheduler that decides which models hold the GPU.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from .config import Config, ModelSpec, model_share_gib
from .engine import EngineClient, EngineError, EngineUnreachable
from .metrics import Metrics
from .planner import Holder, fits, plan_room
from .scheduler import PRIOR_SLEEP_SECONDS, PRIOR_WAKE_SECONDS, Decision, ModelView, Rules, decide, ewma
from .scheduler import holders as scheduler_holders

log = logging.getLogger("switcher")


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

    def __init__(self, spec: ModelSpec, engine: EngineClient, share: float, residual: float, level: int):
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


def public_reason(reason: str) -> str:
    """The part of a failure reason an unauthenticated client may see: its kind, not the engine's
    URL or answer ("wake failed: POST http://...: HTTP 500: ..." -> "wake failed")."""
    return reason.split(": ", 1)[0]


def backoff_seconds(failures: int, initial: float, maximum: float) -> float:
    return min(initial * 2 ** max(failures - 1, 0), maximum)


class Manager:
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
            metrics.queue_depth.labels(model=m.name).set_function(lambda m=m: len(m.queue))
            metrics.inflight.labels(model=m.name).set_function(lambda m=m: m.inflight)
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._probe_now = asyncio.Event()
        self._probe_requested: set[str] = set()
        self._next_deadline: float | None = None
        self._tasks: list[asyncio.Task] = []
        self.ready = False
        self.switching: str | None = None
        # Boot serialisation: one engine at a time holds the grant.
        self._boot_queue: list[str] = []
        self._boot_events: dict[str, asyncio.Event] = {}
        self.grant: str | None = None
        self.grant_at = 0.0
        self._restore_defaults = True

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

    def kick(self) -> None:
        self._kick.set()

    # ------------------------------------------------------------------ request path

    def resolve(self, name: object) -> ModelRuntime | None:
        return self.routes.get(name) if isinstance(name, str) else None

    def try_admit(self, m: ModelRuntime) -> bool:
        """Admit a request without waiting if its model is awake. The hot path: keep it tiny."""
        if m.state is ModelState.AWAKE and not m.draining and not m.cordoned:
            self._admit(m)
            return True
        return False

    def _admit(self, m: ModelRuntime) -> None:
        if m.inflight == 0:
            m.idle.clear()
        m.inflight += 1
        m.last_used = time.monotonic()

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
        self._probe_requested.add(m.name)
        self._probe_now.set()

    # ------------------------------------------------------------------ state bookkeeping

    def _set(self, m: ModelRuntime, state: ModelState, reason: str | None = None, use: float | None = None):
        old = m.state
        now = time.monotonic()
        m.state = state
        m.reason = reason
        m.version += 1
        if use is None:
            use = {
                ModelState.AWAKE: m.share,
                ModelState.STARTING: m.share,
                ModelState.SLEEPING: m.residual,
                ModelState.COLD: 0.0,
            }.get(state, m.use)
        m.use = use
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
    ):
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

    # ------------------------------------------------------------------ engine operations

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

    # ------------------------------------------------------------------ scheduler

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

    # ------------------------------------------------------------------ boot serialisation

    async def request_boot(self, name: str, wait: float) -> tuple[bool, dict]:
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
        self._probe_requested.add(m.name)
        self._probe_now.set()
        self.kick()
        return True, message

    @property
    def boot_queue(self) -> list[str]:
        return list(self._boot_queue)

    def boot_status(self, name: str) -> dict:
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
        # A node must recover on its own: boots do not wait for residencies. But an engine that is not
        # up yet never takes the GPU from work: only models without requests (in flight or queued)
        # are put to sleep for it, so no stream is cut and nobody's requests wait on a boot.
        plan = plan_room(name, self._holders(now, ignore_residency=True), self.capacity, now)
        busy = [v for v in plan.victims if self.models[v].inflight or self.models[v].queue]
        if plan.impossible or busy:
            log.debug("boot of %s waits: %s", name, plan.impossible or f"{', '.join(busy)} serving")
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
                keep = m.spec.awake_by_default or bool(m.queue)
                self._set(m, ModelState.AWAKE, "ready")
                if not keep:
                    m.draining = True  # nothing has been admitted yet, but hold new requests
                    await self._sleep_model(m, "boot")
                    m.draining = False
            self.grant = None
            self._restore_defaults = True
        self.kick()

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
        state = m.state
        if state is ModelState.FAILED:
            m.use = {"gone": 0.0, "awake": m.share, "sleeping": m.residual}[result]
            if time.monotonic() < m.blocked_until:
                return False  # keep the failure visible (and requests refused) during the back-off
            if result == "gone":
                return False
            # Back-off over and the engine answers: take it as it is, so it can serve (awake) or be
            # woken on demand, and an awake one can be put to sleep again to make room.
        if result == "gone":
            if state is ModelState.COLD and not initial:
                return False
            self._set(m, ModelState.COLD, "engine unreachable (not started, restarting or gone)", use=0.0)
            return True
        if result == "awake" and state is not ModelState.AWAKE:
            note = (
                "engine is up and awake"
                if initial
                else "engine reports awake (restarted or woken outside the switcher)"
            )
            self._set(m, ModelState.AWAKE, note)
            return True
        if result == "sleeping" and state is not ModelState.SLEEPING:
            m.slept_level = level or m.slept_level
            note = "engine is up and sleeping" if initial else "engine reports sleeping"
            self._set(m, ModelState.SLEEPING, note)
            return True
        return False

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
        return (
            m.state is ModelState.AWAKE
            and m.inflight == 0
            and not m.queue
            and now - m.last_used >= ttl
            and now - m.awake_since >= self.policy.min_residency_seconds
        )

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

    # ------------------------------------------------------------------ admin operations

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

    async def drain(self, m: ModelRuntime, wait_seconds: float) -> dict:
        """Stop admitting requests for a model (they get 503) and wait for in-flight ones to end."""
        m.cordoned = True
        self._refuse_waiters(m, f"model {m.name} is drained by an operator", self.policy.retry_after_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await m.idle.wait()
        return {"model": m.name, "drained": m.inflight == 0, "inflight": m.inflight}

    def describe(self, m: ModelRuntime) -> dict:
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


def _admitted(fut: asyncio.Future[None]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None


async def _none() -> None:
    return None
