"""VRAM planning: which awake models must sleep so that a target fits. Pure functions, no I/O.

Units are GiB when the models declare their VRAM (co-residency). Without VRAM figures every model is
planned as needing the whole GPU (capacity 1, share 1, residual 0): one awake model at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from .vram import vram_fits  # the one VRAM rule, shared with the collection's capacity plan


@dataclass(frozen=True)
class Holder:
    """One engine as the planner sees it."""

    name: str
    use: float  # VRAM it holds now
    share: float  # VRAM it holds while awake
    residual: float  # VRAM it keeps while asleep
    awake: bool  # awake and may be put to sleep to make room
    evictable_at: float  # monotonic time its minimum residency ends
    priority: int
    last_used: float
    demand: bool = False  # requests in flight, queued or very recent: evicted after idle models


@dataclass(frozen=True)
class Plan:
    victims: tuple[str, ...] = ()  # put these to sleep (in this order), then the target fits
    wait_until: float | None = None  # not possible before this time (residency); re-plan then
    impossible: str | None = None  # cannot fit even after evicting every awake model


def plan_room(target: str, holders: list[Holder], capacity: float, now: float) -> Plan:
    """Smallest eviction that fits ``target``: models without demand first, then lowest priority, then
    least recently used.

    ``holders`` lists every engine including the target. Models whose residency has not ended are
    not evicted: the plan then says when to try again, which is the anti-thrash guarantee.
    """
    by_name = {h.name: h for h in holders}
    tgt = by_name[target]
    used = sum(h.use for h in holders)
    extra = tgt.share - tgt.use  # what waking the target adds (its residual is already counted)
    if vram_fits(used + extra, capacity):
        return Plan()
    candidates = sorted(
        (h for h in holders if h.awake and h.name != target),
        key=lambda h: (h.demand, h.priority, h.last_used),
    )
    freeable = sum(h.use - h.residual for h in candidates)
    if not vram_fits(used - freeable + extra, capacity):
        return Plan(
            impossible=(
                f"{target} needs {extra:g} more but only {capacity - used:g} is free and putting every "
                f"awake model to sleep frees {freeable:g} (capacity {capacity:g})"
            )
        )
    victims: list[str] = []
    for holder in candidates:
        if holder.evictable_at > now:
            continue
        victims.append(holder.name)
        used -= holder.use - holder.residual
        if vram_fits(used + extra, capacity):
            return Plan(victims=tuple(victims))
    # Enough could be freed, but only once some residencies end: try again at the earliest one.
    pending = [h.evictable_at for h in candidates if h.evictable_at > now]
    return Plan(wait_until=min(pending))


def fits(target: str, holders: list[Holder], capacity: float) -> bool:
    by_name = {h.name: h for h in holders}
    tgt = by_name[target]
    return vram_fits(sum(h.use for h in holders) + tgt.share - tgt.use, capacity)
