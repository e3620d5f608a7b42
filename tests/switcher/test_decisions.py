"""The manager's small pure decisions (switcher/decisions.py), case by case."""

from __future__ import annotations

import pytest

from switcher.decisions import (
    ProbeOutcome,
    backoff_seconds,
    boot_waits_for,
    idle_expired,
    keep_awake_after_boot,
    probe_outcome,
    probed_use,
    public_reason,
    resident_use,
)
from switcher.state import ModelState

COLD, STARTING, AWAKE, SLEEPING, FAILED = (
    ModelState.COLD,
    ModelState.STARTING,
    ModelState.AWAKE,
    ModelState.SLEEPING,
    ModelState.FAILED,
)


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("wake failed: POST http://vllm-a:8000/wake_up: HTTP 500: boom", "wake failed"),
        ("could not make room: b: sleep failed: x", "could not make room"),
        ("engine did not become ready", "engine did not become ready"),
        ("", ""),
    ],
)
def test_public_reason_keeps_only_the_kind(reason, shown):
    assert public_reason(reason) == shown


@pytest.mark.parametrize(
    ("failures", "seconds"), [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0), (5, 80.0), (6, 120.0), (60, 120.0)]
)
def test_backoff_doubles_up_to_its_maximum(failures, seconds):
    assert backoff_seconds(failures, 5.0, 120.0) == seconds


@pytest.mark.parametrize(
    ("state", "use"), [(AWAKE, 10.0), (STARTING, 10.0), (SLEEPING, 1.0), (COLD, 0.0), (FAILED, 7.0)]
)
def test_resident_use_by_state(state, use):
    assert resident_use(state, share=10.0, residual=1.0, current=7.0) == use


@pytest.mark.parametrize(("result", "use"), [("gone", 0.0), ("awake", 10.0), ("sleeping", 1.0)])
def test_probed_use(result, use):
    assert probed_use(result, 10.0, 1.0) == use


@pytest.mark.parametrize(
    ("state", "result", "initial", "backed_off", "outcome"),
    [
        # a failure stays visible during its back-off, and while the engine is gone
        (FAILED, "awake", False, True, None),
        (FAILED, "sleeping", False, True, None),
        (FAILED, "gone", False, False, None),
        (FAILED, "gone", True, False, None),
        # after the back-off an answering engine is taken as it is
        (
            FAILED,
            "awake",
            False,
            False,
            ProbeOutcome(AWAKE, "engine reports awake (restarted or woken outside the switcher)"),
        ),
        (FAILED, "sleeping", False, False, ProbeOutcome(SLEEPING, "engine reports sleeping")),
        # gone: cold, but a model already cold is left alone except at start (reason "not probed yet")
        (
            AWAKE,
            "gone",
            False,
            False,
            ProbeOutcome(COLD, "engine unreachable (not started, restarting or gone)"),
        ),
        (
            SLEEPING,
            "gone",
            False,
            True,
            ProbeOutcome(COLD, "engine unreachable (not started, restarting or gone)"),
        ),
        (COLD, "gone", False, False, None),
        (
            COLD,
            "gone",
            True,
            False,
            ProbeOutcome(COLD, "engine unreachable (not started, restarting or gone)"),
        ),
        # appearing engines, at start and later
        (COLD, "awake", True, False, ProbeOutcome(AWAKE, "engine is up and awake")),
        (
            COLD,
            "awake",
            False,
            False,
            ProbeOutcome(AWAKE, "engine reports awake (restarted or woken outside the switcher)"),
        ),
        (COLD, "sleeping", True, False, ProbeOutcome(SLEEPING, "engine is up and sleeping")),
        (AWAKE, "sleeping", False, False, ProbeOutcome(SLEEPING, "engine reports sleeping")),
        (
            SLEEPING,
            "awake",
            False,
            False,
            ProbeOutcome(AWAKE, "engine reports awake (restarted or woken outside the switcher)"),
        ),
        # nothing new
        (AWAKE, "awake", False, False, None),
        (SLEEPING, "sleeping", True, False, None),
    ],
)
def test_probe_outcome(state, result, initial, backed_off, outcome):
    assert probe_outcome(state, result, initial, backed_off) == outcome


BASE = {"awake": True, "busy": False, "idle_for": 10.0, "awake_for": 20.0, "ttl": 10.0, "min_residency": 20.0}


@pytest.mark.parametrize(
    ("change", "expired"),
    [
        ({}, True),  # both bounds met exactly
        ({"awake": False}, False),
        ({"busy": True}, False),
        ({"idle_for": 9.99}, False),
        ({"awake_for": 19.99}, False),
        ({"idle_for": 11.0, "awake_for": 25.0}, True),
    ],
)
def test_idle_expired(change, expired):
    assert idle_expired(**{**BASE, **change}) is expired


@pytest.mark.parametrize(
    ("impossible", "victims", "busy", "wanted", "waits"),
    [
        (None, (), [], False, None),  # room without evicting: the boot goes
        (None, ("a",), [], True, None),  # requests wait for it: idle a is put to sleep
        (None, ("a", "b"), [], False, "a, b holds the GPU and no request waits for this model"),
        (None, ("a", "b"), ["b"], True, "b serving"),
        (None, ("a", "b"), ["a", "b"], True, "a, b serving"),  # every model that keeps it waiting
        ("cannot fit", (), [], True, "cannot fit"),
    ],
)
def test_boot_waits_for(impossible, victims, busy, wanted, waits):
    assert boot_waits_for(impossible=impossible, victims=victims, busy=busy, wanted=wanted) == waits


@pytest.mark.parametrize(
    ("awake_by_default", "queued", "boots_waiting", "keep"),
    [
        (True, 0, 0, True),
        (False, 1, 0, True),
        (False, 0, 0, False),
        (True, 3, 1, False),  # another engine waits to boot: the GPU must be free for it
    ],
)
def test_keep_awake_after_boot(awake_by_default, queued, boots_waiting, keep):
    assert keep_awake_after_boot(awake_by_default, queued, boots_waiting) is keep
