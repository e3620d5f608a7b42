"""VRAM planner: who must sleep so that a target fits."""

from __future__ import annotations

import pytest

from switcher.manager import backoff_seconds
from switcher.planner import Holder, fits, plan_room


def holder(name, use, share, *, awake=True, evictable_at=0.0, priority=0, last_used=0.0, residual=1.0):
    return Holder(name, use, share, residual, awake, evictable_at, priority, last_used)


def test_target_that_fits_evicts_nobody():
    holders = [holder("a", 20, 20), holder("t", 1, 30, awake=False)]
    plan = plan_room("t", holders, capacity=80, now=10)
    assert plan.victims == () and plan.wait_until is None and plan.impossible is None
    assert fits("t", holders, 80)


def test_evicts_lowest_priority_then_least_recently_used():
    holders = [
        holder("old", 30, 30, last_used=1),
        holder("new", 30, 30, last_used=9),
        holder("vip", 30, 30, last_used=0, priority=5),
        holder("t", 1, 30, awake=False),
    ]
    # used 91 of 100, target needs 29 more: one eviction (frees 29) is enough, the LRU low-priority one
    plan = plan_room("t", holders, capacity=100, now=10)
    assert plan.victims == ("old",)
    holders[0] = holder("old", 30, 30, last_used=1, priority=9)
    assert plan_room("t", holders, capacity=100, now=10).victims == ("new",)


def test_evicts_several_when_one_is_not_enough():
    holders = [
        holder("a", 20, 20, last_used=1),
        holder("b", 20, 20, last_used=2),
        holder("t", 0, 35, awake=False),
    ]
    assert plan_room("t", holders, capacity=45, now=5).victims == ("a", "b")


def test_residency_makes_the_plan_wait_instead_of_evicting():
    holders = [holder("a", 40, 40, evictable_at=12.5), holder("t", 1, 40, awake=False)]
    plan = plan_room("t", holders, capacity=41, now=10)
    assert plan.victims == () and plan.wait_until == 12.5
    assert plan_room("t", holders, capacity=41, now=13).victims == ("a",)


def test_impossible_when_non_awake_holders_keep_the_memory():
    # a starting engine (not awake, so not evictable) holds most of the GPU
    holders = [holder("boot", 70, 70, awake=False), holder("t", 0, 30, awake=False)]
    plan = plan_room("t", holders, capacity=80, now=0)
    assert plan.impossible and "t needs 30" in plan.impossible


def test_exclusive_mode_swaps_the_only_awake_model():
    holders = [holder("a", 1, 1, residual=0), holder("t", 0, 1, awake=False, residual=0)]
    assert plan_room("t", holders, capacity=1, now=0).victims == ("a",)


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_seconds(n, 1, 5) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_models_without_demand_are_evicted_before_busy_ones():
    def with_demand(name, demand, **kw):
        return Holder(name, 30, 30, 1.0, True, 0.0, kw.get("priority", 0), kw.get("last_used", 0.0), demand)

    target = holder("t", 1, 30, awake=False)
    # "busy" is the least recently used and has the lower priority, but it has demand: "idle" goes
    holders = [
        with_demand("busy", True, last_used=1),
        with_demand("idle", False, last_used=9, priority=5),
        target,
    ]
    assert plan_room("t", holders, capacity=80, now=10).victims == ("idle",)
    holders = [
        with_demand("busy", False, last_used=1),
        with_demand("idle", False, last_used=9, priority=5),
        target,
    ]
    assert plan_room("t", holders, capacity=80, now=10).victims == ("busy",)


def test_impossible_counts_what_sleeping_keeps():
    # boot (30, not evictable) + a (50 awake, keeps 1 asleep) + t's residual 1 = 81 of 80: sleeping a
    # frees 49, t needs 49 more: 81 - 49 + 49 = 81 > 80
    holders = [holder("boot", 30, 30, awake=False), holder("a", 50, 50), holder("t", 1, 50, awake=False)]
    plan = plan_room("t", holders, capacity=80, now=0)
    assert plan.impossible == (
        "t needs 49 more but only -1 is free and putting every awake model to sleep frees 49 (capacity 80)"
    )
    holders[0] = holder("boot", 29, 29, awake=False)
    assert plan_room("t", holders, capacity=80, now=0).victims == ("a",)


def test_a_protected_model_is_skipped_not_the_end_of_the_search():
    # p comes first (lower priority) but is protected until 20: q, evictable, is chosen instead
    holders = [
        holder("p", 30, 30, evictable_at=20.0),
        holder("q", 30, 30, priority=1),
        holder("t", 1, 30, awake=False),
    ]
    assert plan_room("t", holders, capacity=80, now=10).victims == ("q",)


def test_each_victim_frees_its_share_less_what_it_keeps_asleep():
    # 40 used, t needs 35 of 55: sleeping a frees 19 (56 > 55), so b must sleep too
    holders = [
        holder("a", 20, 20, last_used=1),
        holder("b", 20, 20, last_used=2),
        holder("t", 0, 35, awake=False),
    ]
    assert plan_room("t", holders, capacity=55, now=5).victims == ("a", "b")
    assert plan_room("t", holders, capacity=56, now=5).victims == ("a",)


def test_wait_until_is_the_earliest_protection_still_running():
    # x (evictable now) is not enough; y is protected until 20: wait until 20, not until now
    holders = [
        holder("x", 20, 20, evictable_at=10.0, last_used=1),
        holder("y", 20, 20, evictable_at=20.0, last_used=2),
        holder("t", 0, 35, awake=False),
    ]
    plan = plan_room("t", holders, capacity=45, now=10)
    assert plan.victims == () and plan.wait_until == 20.0


@pytest.mark.parametrize(("capacity", "expected"), [(80, True), (79, False)])
def test_fits_counts_only_what_waking_adds(capacity, expected):
    # 40 + t's residual 1 held; waking t adds 40 - 1: 80 in all
    holders = [holder("a", 40, 40), holder("t", 1, 40, awake=False)]
    assert fits("t", holders, capacity) is expected
