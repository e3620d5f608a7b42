"""The manager's small decisions, as pure functions: no I/O, no clock, no event loop.

Which model gets the GPU is decided in ``scheduler.py`` and who makes room in ``planner.py``; this file
holds the rest: what a probe result means for a model's state, when an idle TTL has expired, what a
model holds in VRAM in each state, how long a back-off lasts, and what a client may read of a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from .state import ModelState


def public_reason(reason: str) -> str:
    """The part of a failure reason an unauthenticated client may see: its kind, not the engine's
    URL or answer ("wake failed: POST http://...: HTTP 500: ..." -> "wake failed")."""
    return reason.split(": ", 1)[0]


def backoff_seconds(failures: int, initial: float, maximum: float) -> float:
    return min(initial * 2.0 ** max(failures - 1, 0), maximum)


def resident_use(state: ModelState, share: float, residual: float, current: float) -> float:
    """VRAM an engine holds in a state it has just entered (a failed one keeps what it held)."""
    if state in (ModelState.AWAKE, ModelState.STARTING):
        return share
    if state is ModelState.SLEEPING:
        return residual
    if state is ModelState.COLD:
        return 0.0
    return current


@dataclass(frozen=True)
class ProbeOutcome:
    state: ModelState
    note: str


def probe_outcome(state: ModelState, result: str, initial: bool, backed_off: bool) -> ProbeOutcome | None:
    """What an engine's answer to ``GET /is_sleeping`` ("awake", "sleeping", or "gone": unreachable)
    means for a model in ``state``; None when its state stays as it is.

    A failed model keeps its failure visible (and its requests refused) during its back-off, and while
    its engine is gone; after the back-off an answering engine is taken as it is, so it can serve
    (awake) or be woken on demand, and an awake one can be put to sleep again to make room.
    """
    if state is ModelState.FAILED and (backed_off or result == "gone"):
        return None
    if result == "gone":
        if state is ModelState.COLD and not initial:
            return None
        return ProbeOutcome(ModelState.COLD, "engine unreachable (not started, restarting or gone)")
    if result == "awake" and state is not ModelState.AWAKE:
        if initial:
            return ProbeOutcome(ModelState.AWAKE, "engine is up and awake")
        return ProbeOutcome(
            ModelState.AWAKE, "engine reports awake (restarted or woken outside the switcher)"
        )
    if result == "sleeping" and state is not ModelState.SLEEPING:
        return ProbeOutcome(
            ModelState.SLEEPING, "engine is up and sleeping" if initial else "engine reports sleeping"
        )
    return None


def probed_use(result: str, share: float, residual: float) -> float:
    """VRAM an engine holds, from its answer to a probe."""
    return {"gone": 0.0, "awake": share, "sleeping": residual}[result]


def idle_expired(
    *,
    awake: bool,
    busy: bool,
    idle_for: float,
    awake_for: float,
    ttl: float,
    min_residency: float,
) -> bool:
    """An awake model with nothing in flight or queued, unused for its TTL and past its residency."""
    return awake and not busy and idle_for >= ttl and awake_for >= min_residency


def boot_waits_for(
    *, impossible: str | None, victims: tuple[str, ...], busy: list[str], wanted: bool
) -> str | None:
    """Why the next engine in the boot line may not take the grant yet (None: it may).

    An engine that is not up never takes the GPU from anything on its own say-so: ``GET /boot`` is
    unauthenticated, and an engine that never comes would hold the grant. Only requests waiting for
    the booting model (``wanted``) may make room for it, and only from models with no request in flight
    or queued, so no stream is cut and nobody's requests wait on a boot.
    """
    if impossible:
        return impossible
    if busy:
        return f"{', '.join(busy)} serving"
    if victims and not wanted:
        return f"{', '.join(victims)} holds the GPU and no request waits for this model"
    return None


def keep_awake_after_boot(awake_by_default: bool, queued: int, boots_waiting: int) -> bool:
    """An engine that came up awake stays awake if it is wanted (awake by default, or requests wait
    for it) and no other engine waits to boot: the boots behind it must not need it put to sleep.
    The awake-by-default set is restored once every boot is done."""
    return boots_waiting == 0 and (awake_by_default or queued > 0)
