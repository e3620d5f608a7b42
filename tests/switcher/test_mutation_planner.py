"""The planner's arithmetic, pinned: cases where a swapped sign or comparison changes the plan.

Written against the mutants `make mutation` found surviving: the residual in the victim accounting, the
free VRAM in the message, skipping (not stopping at) a protected model, and the earliest end of a
residency that is still to come.
"""

from __future__ import annotations

import pytest

from ansible_collections.k3sllm.platform.plugins.module_utils import vram as collection_vram
from switcher import vram as switcher_vram
from switcher.planner import Holder, Plan, fits, plan_room


def holder(name, use, share, *, awake=True, evictable_at=0.0, priority=0, last_used=0.0, residual=1.0):
    return Holder(name, use, share, residual, awake, evictable_at, priority, last_used)


def test_evicting_everyone_frees_only_what_the_victims_do_not_keep():
    # a holds 6 and keeps 2 asleep: evicting it frees 4. Target (2 held asleep) needs 7 more; 2 are free.
    holders = [holder("a", 6, 6, residual=2), holder("t", 2, 9, awake=False, residual=2)]
    plan = plan_room("t", holders, capacity=10, now=0)
    assert plan == Plan(
        impossible="t needs 7 more but only 2 is free and putting every awake model to sleep frees 4 "
        "(capacity 10)"
    )


def test_each_victim_frees_its_share_minus_its_residual():
    # used 10 of 10; t needs 5 more. a frees 4 (not 6): one victim is not enough, both are.
    holders = [
        holder("a", 5, 5, last_used=1),
        holder("b", 4, 4, last_used=2),
        holder("t", 1, 6, awake=False),
    ]
    assert plan_room("t", holders, capacity=10, now=5) == Plan(victims=("a", "b"))
    assert not fits("t", holders, 10)


def test_a_protected_model_is_skipped_and_the_next_one_evicted():
    # a goes first by priority but its residency runs until 50: b is evicted instead, now.
    holders = [
        holder("a", 4, 4, evictable_at=50, priority=0),
        holder("b", 4, 4, evictable_at=0, priority=1),
        holder("t", 1, 4, awake=False),
    ]
    assert plan_room("t", holders, capacity=9, now=10) == Plan(victims=("b",))


def test_wait_until_is_the_earliest_residency_still_to_come():
    # b's residency ends right now (evictable, and evicted), a's at 30: not enough yet, wait for a.
    holders = [
        holder("a", 4, 4, evictable_at=30, last_used=2),
        holder("b", 3, 3, evictable_at=10, last_used=1),
        holder("t", 1, 8, awake=False),
    ]
    assert plan_room("t", holders, capacity=10, now=10) == Plan(wait_until=30)


def test_a_target_that_fits_exactly_needs_no_victim():
    holders = [holder("a", 4, 4), holder("t", 1, 6, awake=False)]  # 4 + 6 = 10
    assert plan_room("t", holders, capacity=10, now=0) == Plan()
    assert fits("t", holders, 10)
    assert not fits("t", holders, 9.99)


@pytest.mark.parametrize("rule", [collection_vram, switcher_vram], ids=["collection", "switcher"])
def test_the_edge_of_the_tolerance_is_inside(rule):
    capacity = 80.0
    edge = capacity * (1.0 + rule.TOLERANCE)
    assert rule.vram_fits(edge, capacity)
    assert not rule.vram_fits(edge * (1.0 + rule.TOLERANCE), capacity)
