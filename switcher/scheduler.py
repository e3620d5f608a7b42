"""The scheduling policy: which model gets the GPU next. A pure function of a snapshot; no I/O, no clock.

The manager takes a snapshot of every model (state, VRAM, requests in flight and waiting, when it
woke, when it was last used, what its switches cost) and asks :func:`decide` for the next step. The
rules (switcher/README.md, "Scheduling policy", has a worked example):

- **Demand.** An awake model has demand while it has requests in flight or queued, or served one
  within ``demand_grace`` seconds (the gap between a client's answer and its next request).
- **Residency protects demand, not the clock.** An awake model with demand is not evicted before its
  time slice ends: ``max(min_residency, residency_cost_multiple x its switch cost)``, so that under
  contention a switch pays for itself. An awake model without demand is evicted at once when
  another model waits.
- **Next model.** Among the models with waiting requests, the highest score goes first:
  ``weight(priority) x (seconds waited, summed over its waiting requests) / (switch cost)``, where the
  switch cost is its measured wake time plus the measured sleep times of the models it displaces.
  A model whose oldest request has waited ``starvation_age`` goes before every score (oldest first),
  so no queue starves behind busier or higher-priority ones.
- **Over capacity.** When the awake set holds more than the GPU (engines found awake together at
  start), models are put to sleep at once, ignoring residencies, until it fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .planner import Holder, plan_room
from .vram import vram_fits

# Until an engine's sleep or wake has been measured, assume these (seconds; vLLM level-1 sleep and
# wake of a mid-size model take about this, FACTS.md). The first measurement replaces the prior.
PRIOR_SLEEP_SECONDS = 2.0
PRIOR_WAKE_SECONDS = 3.0
# Weight of a new measurement in the running estimate of an engine's sleep or wake time.
COST_ALPHA = 0.3
# A switch never counts as cheaper than this (guards the score's division).
MIN_SWITCH_COST = 0.01


@dataclass(frozen=True)
class ModelView:
    """One model as the scheduler sees it at one instant."""

    name: str
    awake: bool  # serving (and not already being put to sleep)
    wakeable: bool  # asleep (or failed, back-off over) and allowed to be woken now
    use: float  # VRAM it holds now
    share: float  # VRAM it holds while awake
    residual: float  # VRAM it keeps while asleep
    priority: int = 0
    inflight: int = 0
    waiting: tuple[float, ...] = ()  # arrival times of its queued requests
    awake_since: float = 0.0
    last_used: float = 0.0  # last admission or completion of one of its requests
    sleep_cost: float = PRIOR_SLEEP_SECONDS  # expected seconds to put it to sleep
    wake_cost: float = PRIOR_WAKE_SECONDS  # expected seconds to wake it


@dataclass(frozen=True)
class Rules:
    capacity: float
    min_residency: float = 0.0
    residency_cost_multiple: float = 0.0
    demand_grace: float = 0.0
    batch_window: float = 0.0
    starvation_age: float = math.inf


@dataclass(frozen=True)
class Decision:
    target: str | None = None  # wake this one (after putting the victims to sleep)
    victims: tuple[str, ...] = ()  # put these to sleep (with no target: to get within capacity)
    recheck_at: float | None = None  # nothing to do before this time (a slice or grace ends)
    blocked: str | None = None  # a waiting model cannot fit now (VRAM held by engines not awake)
    why: str = ""


def ewma(previous: float | None, sample: float, alpha: float = COST_ALPHA) -> float:
    """Running estimate of a duration: the first sample replaces the prior, later ones blend in."""
    if previous is None:
        return sample
    return previous + alpha * (sample - previous)


def switch_cost(model: ModelView) -> float:
    """Seconds the GPU serves nobody when this model is swapped out and back in."""
    return model.sleep_cost + model.wake_cost


def time_slice(model: ModelView, rules: Rules) -> float:
    """How long an awake model with demand keeps the GPU before a waiting model may take it."""
    return max(rules.min_residency, rules.residency_cost_multiple * switch_cost(model))


def has_demand(model: ModelView, rules: Rules, now: float) -> bool:
    return model.inflight > 0 or bool(model.waiting) or now - model.last_used < rules.demand_grace


def evictable_at(model: ModelView, rules: Rules, now: float) -> float:
    """When an awake model may be put to sleep for another: at once without demand, else when its
    slice ends (or, if only the grace keeps it, when the grace ends, if that is sooner)."""
    slice_end = model.awake_since + time_slice(model, rules)
    if model.inflight > 0 or model.waiting:
        return slice_end
    grace_end = model.last_used + rules.demand_grace
    if now < grace_end:
        return min(grace_end, slice_end)
    return -math.inf


def priority_weight(priority: int) -> float:
    """How many times a waiting second counts: ``1 + priority`` (priority 1 twice, 3 four times), and
    below zero the inverse (-1 half, -3 a quarter). Linear, so a priority 10 model against a priority 5
    one claims 11/6 of the GPU time, not 2**5 times: priorities order the queues without starving
    the lower ones (and past ``starvation_age`` the oldest request goes first whatever its priority)."""
    return 1.0 + priority if priority >= 0 else 1.0 / (1.0 - priority)


def waited_seconds(model: ModelView, now: float) -> float:
    """Request-seconds its waiting requests have spent in the queue so far."""
    return sum(now - since for since in model.waiting)


def score(model: ModelView, cost: float, now: float) -> float:
    return priority_weight(model.priority) * waited_seconds(model, now) / max(cost, MIN_SWITCH_COST)


def holders(models: list[ModelView], rules: Rules, now: float, protect: bool = True) -> list[Holder]:
    """The planner's view; with ``protect`` awake models with demand keep their slice."""
    return [
        Holder(
            name=m.name,
            use=m.use,
            share=m.share,
            residual=m.residual,
            awake=m.awake,
            evictable_at=evictable_at(m, rules, now) if protect and m.awake else -math.inf,
            priority=m.priority,
            last_used=m.last_used,
            demand=m.awake and has_demand(m, rules, now),
        )
        for m in models
    ]


def over_capacity_victims(models: list[ModelView], capacity: float) -> tuple[str, ...]:
    """Awake models to put to sleep, ignoring residencies, so that what is held fits the GPU.

    Without demand first, then lowest priority, then least recently used.
    """
    used = sum(m.use for m in models)
    if vram_fits(used, capacity):
        return ()
    victims: list[str] = []
    order = sorted(
        (m for m in models if m.awake),
        key=lambda m: (m.inflight > 0 or bool(m.waiting), m.priority, m.last_used),
    )
    for m in order:
        if vram_fits(used, capacity):
            break
        victims.append(m.name)
        used -= m.use - m.residual
    return tuple(victims)


def decide(models: list[ModelView], rules: Rules, now: float) -> Decision:
    """The next step: a switch, an eviction to get within capacity, or when to look again."""
    victims = over_capacity_victims(models, rules.capacity)
    if victims:
        used = sum(m.use for m in models)
        return Decision(victims=victims, why=f"{used:g} held of {rules.capacity:g}: over capacity")
    candidates = [m for m in models if m.wakeable and m.waiting]
    if not candidates:
        return Decision()
    first_arrival = min(min(m.waiting) for m in candidates)
    if now - first_arrival < rules.batch_window:
        return Decision(recheck_at=first_arrival + rules.batch_window, why="batch window")
    by_name = {m.name: m for m in models}
    protected = holders(models, rules, now)
    plans = {m.name: plan_room(m.name, protected, rules.capacity, now) for m in candidates}

    def cost(m: ModelView) -> float:
        # Only a plan that can go now is compared by score, so its victims are the real ones.
        return m.wake_cost + sum(by_name[v].sleep_cost for v in plans[m.name].victims)

    def overdue(m: ModelView) -> bool:
        return now - min(m.waiting) >= rules.starvation_age

    def rank(m: ModelView) -> tuple[bool, float, int, float, str]:
        late = overdue(m)
        return (
            not late,
            min(m.waiting) if late else -score(m, cost(m), now),
            -m.priority,
            min(m.waiting),
            m.name,
        )

    recheck: float | None = None
    blocked: str | None = None
    for m in sorted(candidates, key=rank):
        plan = plans[m.name]
        if plan.impossible is None and plan.wait_until is None:
            why = (
                f"{len(m.waiting)} waiting, {waited_seconds(m, now):.3g} s waited, switch cost "
                f"{cost(m):.3g} s" + (", overdue" if overdue(m) else "")
            )
            return Decision(target=m.name, victims=plan.victims, why=why)
        if plan.impossible is not None:
            blocked = blocked or plan.impossible
        else:
            recheck = plan.wait_until  # the earliest end of a slice or grace: one time for every candidate
        if overdue(m):
            break  # an overdue model goes first: nothing else may take the room it waits for
    return Decision(recheck_at=recheck, blocked=blocked, why="waiting for a slice or grace to end")
