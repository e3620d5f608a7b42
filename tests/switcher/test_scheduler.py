"""The scheduling policy (switcher/scheduler.py), a pure function of a snapshot: table-driven, so that
each comparison and each sum in it is pinned by a case on either side of its boundary."""

from __future__ import annotations

import math

import pytest

from switcher.scheduler import (
    COST_ALPHA,
    MIN_SWITCH_COST,
    PRIOR_SLEEP_SECONDS,
    PRIOR_WAKE_SECONDS,
    Decision,
    ModelView,
    Rules,
    decide,
    evictable_at,
    ewma,
    has_demand,
    holders,
    over_capacity_victims,
    priority_weight,
    score,
    switch_cost,
    time_slice,
    waited_seconds,
)


def view(name="m", *, awake=False, wakeable=None, use=None, share=1.0, residual=0.0, **kw) -> ModelView:
    """A model: awake ones hold their share, others their residual, unless ``use`` says otherwise."""
    if wakeable is None:
        wakeable = not awake
    if use is None:
        use = share if awake else residual
    return ModelView(name=name, awake=awake, wakeable=wakeable, use=use, share=share, residual=residual, **kw)


EXCLUSIVE = Rules(capacity=1.0)


# ---------------------------------------------------------------------------------------- estimates


@pytest.mark.parametrize(
    ("previous", "sample", "alpha", "expected"),
    [
        (None, 4.0, 0.3, 4.0),  # the first measurement replaces the prior
        (10.0, 20.0, 0.3, 13.0),
        (10.0, 0.0, 0.3, 7.0),
        (10.0, 20.0, 1.0, 20.0),
        (10.0, 20.0, 0.0, 10.0),
    ],
)
def test_ewma(previous, sample, alpha, expected):
    assert ewma(previous, sample, alpha) == pytest.approx(expected)


def test_ewma_default_weight():
    assert COST_ALPHA == 0.3
    assert ewma(1.0, 2.0) == pytest.approx(1.3)


def test_prior_costs_of_an_unmeasured_engine():
    m = view()
    assert (m.sleep_cost, m.wake_cost) == (PRIOR_SLEEP_SECONDS, PRIOR_WAKE_SECONDS) == (2.0, 3.0)
    assert switch_cost(view(sleep_cost=2.0, wake_cost=3.5)) == 5.5


@pytest.mark.parametrize(
    ("min_residency", "multiple", "sleep", "wake", "expected"),
    [
        (10.0, 4.0, 2.0, 3.0, 20.0),  # the switch cost decides: 4 x (2 + 3)
        (30.0, 4.0, 2.0, 3.0, 30.0),  # the floor decides
        (10.0, 0.0, 2.0, 3.0, 10.0),
        (0.0, 2.0, 0.5, 0.25, 1.5),
    ],
)
def test_time_slice(min_residency, multiple, sleep, wake, expected):
    rules = Rules(capacity=1, min_residency=min_residency, residency_cost_multiple=multiple)
    assert time_slice(view(sleep_cost=sleep, wake_cost=wake), rules) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------- demand

GRACE = Rules(capacity=1, min_residency=10.0, demand_grace=0.5)


@pytest.mark.parametrize(
    ("inflight", "waiting", "last_used", "now", "expected"),
    [
        (1, (), 0.0, 100.0, True),  # a request in flight
        (0, (99.0,), 0.0, 100.0, True),  # a request queued (held by a drain)
        (0, (), 99.6, 100.0, True),  # used 0.4 s ago, within the 0.5 s grace
        (0, (), 99.5, 100.0, False),  # exactly the grace: over
        (0, (), 99.0, 100.0, False),
        (0, (), 100.0, 100.0, True),
    ],
)
def test_has_demand(inflight, waiting, last_used, now, expected):
    m = view(awake=True, inflight=inflight, waiting=waiting, last_used=last_used)
    assert has_demand(m, GRACE, now) is expected


@pytest.mark.parametrize(
    ("inflight", "waiting", "awake_since", "last_used", "now", "expected"),
    [
        # busy: protected until its slice ends (awake_since + max(10, 4 x 0) = +10)
        (1, (), 95.0, 99.9, 100.0, 105.0),
        (0, (98.0,), 95.0, 99.9, 100.0, 105.0),
        (2, (), 80.0, 99.9, 100.0, 90.0),  # slice over: evictable (the time is in the past)
        # only the grace protects it: until the grace ends, or the slice if that is sooner
        (0, (), 95.0, 99.8, 100.0, 100.3),
        (0, (), 90.1, 99.8, 100.0, 100.1),
        # idle: at once
        (0, (), 95.0, 99.5, 100.0, -math.inf),
        (0, (), 95.0, 90.0, 100.0, -math.inf),
    ],
)
def test_evictable_at(inflight, waiting, awake_since, last_used, now, expected):
    m = view(awake=True, inflight=inflight, waiting=waiting, awake_since=awake_since, last_used=last_used)
    rules = Rules(capacity=1, min_residency=10.0, demand_grace=0.5)
    assert evictable_at(m, rules, now) == pytest.approx(expected)


def test_evictable_at_uses_the_cost_based_slice():
    m = view(awake=True, inflight=1, awake_since=100.0, sleep_cost=1.0, wake_cost=2.0)
    assert evictable_at(m, Rules(capacity=1, min_residency=5.0, residency_cost_multiple=4.0), 101.0) == 112.0


def test_holders_protect_only_awake_models_and_only_when_asked():
    awake = view("a", awake=True, inflight=1, awake_since=100.0, last_used=100.0, priority=3)
    asleep = view("s", waiting=(100.0,), last_used=50.0)
    rules = Rules(capacity=1, min_residency=10.0)
    h_awake, h_asleep = holders([awake, asleep], rules, 101.0)
    assert (h_awake.evictable_at, h_awake.demand, h_awake.priority, h_awake.last_used) == (
        110.0,
        True,
        3,
        100.0,
    )
    assert (h_awake.use, h_awake.share, h_awake.residual, h_awake.awake) == (1.0, 1.0, 0.0, True)
    assert (h_asleep.evictable_at, h_asleep.demand, h_asleep.awake) == (-math.inf, False, False)
    unprotected = holders([awake, asleep], rules, 101.0, protect=False)
    assert unprotected[0].evictable_at == -math.inf and unprotected[0].demand is True


# ---------------------------------------------------------------------------------------- score


@pytest.mark.parametrize(
    ("priority", "weight"),
    [(0, 1.0), (1, 2.0), (3, 4.0), (10, 11.0), (-1, 0.5), (-2, 1 / 3), (-3, 0.25), (100, 101.0), (-99, 0.01)],
)
def test_priority_weight(priority, weight):
    assert priority_weight(priority) == weight


def test_waited_seconds_sums_every_waiting_request():
    assert waited_seconds(view(waiting=(4.0, 7.0)), 10.0) == 9.0
    assert waited_seconds(view(), 10.0) == 0.0


@pytest.mark.parametrize(
    ("priority", "waiting", "cost", "expected"),
    [
        (0, (4.0, 7.0), 3.0, 3.0),  # 9 request-seconds per 3 s of switch
        (1, (4.0, 7.0), 3.0, 6.0),
        (-1, (4.0, 7.0), 3.0, 1.5),
        (0, (4.0, 7.0), 0.0, 9.0 / MIN_SWITCH_COST),  # a free switch still divides safely
        (0, (4.0, 7.0), 0.001, 9.0 / MIN_SWITCH_COST),
        (0, (4.0, 7.0), 0.02, 450.0),
    ],
)
def test_score(priority, waiting, cost, expected):
    assert score(view(priority=priority, waiting=waiting), cost, 10.0) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------- capacity


@pytest.mark.parametrize(
    ("models", "capacity", "victims"),
    [
        # found awake together at start, 2 of 1: the idle one sleeps, then the busy one is not needed
        ([view("a", awake=True, inflight=1), view("b", awake=True)], 1.0, ("b",)),
        ([view("a", awake=True), view("b", awake=True, inflight=1)], 1.0, ("a",)),
        ([view("a", awake=True, waiting=(1.0,)), view("b", awake=True)], 1.0, ("b",)),
        # same demand: lowest priority first, then least recently used
        ([view("a", awake=True, priority=1), view("b", awake=True)], 1.0, ("b",)),
        ([view("a", awake=True, last_used=5.0), view("b", awake=True, last_used=6.0)], 1.0, ("a",)),
        # exactly full is within capacity
        ([view("a", awake=True, share=0.5), view("b", awake=True, share=0.5)], 1.0, ()),
        # 50 + 50 + 30 awake on 80: sleeping the LRU 50 leaves 50 + 30 + its residual 1 = 81: one more
        (
            [
                view("a", awake=True, share=50, residual=1, last_used=1),
                view("b", awake=True, share=50, residual=1, last_used=2),
                view("c", awake=True, share=30, residual=1, last_used=3),
            ],
            80.0,
            ("a", "b"),
        ),
        # the same with no residual: one is enough (pins use - residual)
        (
            [
                view("a", awake=True, share=50, last_used=1),
                view("b", awake=True, share=50, last_used=2),
                view("c", awake=True, share=30, last_used=3),
            ],
            80.0,
            ("a",),
        ),
        # asleep engines hold their residual but cannot be put to sleep again
        ([view("a", share=1, residual=0.6), view("b", awake=True, share=0.5)], 1.0, ("b",)),
    ],
)
def test_over_capacity_victims(models, capacity, victims):
    assert over_capacity_victims(models, capacity) == victims


def test_decide_brings_the_awake_set_within_capacity_before_anything_else():
    models = [
        view("a", awake=True, inflight=3, awake_since=99.0),
        view("b", awake=True),
        view("c", waiting=(0.0,)),
    ]
    d = decide(models, Rules(capacity=1, min_residency=60), 100.0)
    assert d == Decision(victims=("b",), why="2 held of 1: over capacity")


# ---------------------------------------------------------------------------------------- decide


def test_nothing_waiting_nothing_to_do():
    assert decide([view("a", awake=True), view("b")], EXCLUSIVE, 5.0) == Decision()


def test_waiting_for_a_model_that_cannot_be_woken_is_not_a_candidate():
    models = [view("a", awake=True), view("b", wakeable=False, waiting=(1.0,))]
    assert decide(models, EXCLUSIVE, 5.0) == Decision()


def test_idle_awake_model_is_evicted_at_once_despite_its_residency():
    # a woke 1 s ago (60 s residency) but has nothing in flight, queued or recent: b goes now
    models = [
        view("a", awake=True, awake_since=99.0, last_used=99.5),
        view("b", waiting=(99.9,)),
    ]
    d = decide(models, Rules(capacity=1, min_residency=60, demand_grace=0.2), 100.0)
    assert (d.target, d.victims, d.recheck_at) == ("b", ("a",), None)


def test_awake_model_with_demand_keeps_its_slice():
    models = [view("a", awake=True, inflight=1, awake_since=99.0), view("b", waiting=(99.9,))]
    rules = Rules(capacity=1, min_residency=60)
    d = decide(models, rules, 100.0)
    assert (d.target, d.victims, d.recheck_at) == (None, (), 159.0)
    d = decide(models, rules, 159.0)  # the slice is over: b takes its turn, a's requests drain
    assert (d.target, d.victims) == ("b", ("a",))


def test_grace_protects_a_model_just_used_until_the_grace_ends():
    models = [view("a", awake=True, awake_since=90.0, last_used=99.9), view("b", waiting=(99.95,))]
    rules = Rules(capacity=1, min_residency=60, demand_grace=0.25)
    assert decide(models, rules, 100.0).recheck_at == pytest.approx(100.15)
    assert decide(models, rules, 100.15).target == "b"


def test_batch_window_holds_the_choice_until_the_first_request_has_waited_it():
    models = [view("a", awake=True), view("b", waiting=(10.0,)), view("c", waiting=(10.2,), priority=5)]
    rules = Rules(capacity=1, batch_window=0.5)
    assert decide(models, rules, 10.4) == Decision(recheck_at=10.5, why="batch window")
    assert decide(models, rules, 10.5).target == "c"  # exactly the window: choose now


@pytest.mark.parametrize(
    ("b", "c", "winner"),
    [
        # more request-seconds waited per second of switch wins
        (dict(waiting=(0.0, 0.0)), dict(waiting=(0.0,)), "b"),
        (dict(waiting=(0.0,)), dict(waiting=(0.0, 5.0)), "c"),  # 10 + 5 against 10
        # a cheaper switch wins at equal waiting: 10/(2+2) against 10/(2+3)
        (dict(waiting=(0.0,), wake_cost=2.0), dict(waiting=(0.0,), wake_cost=3.0), "b"),
        (dict(waiting=(0.0,), wake_cost=3.0), dict(waiting=(0.0,), wake_cost=2.0), "c"),
        # the displaced model's sleep counts too: a sleeps in 2 s for both, so 10/4 against 12/5
        (dict(waiting=(0.0,), wake_cost=2.0), dict(waiting=(-2.0,), wake_cost=3.0), "b"),
        (dict(waiting=(0.0,), wake_cost=2.0), dict(waiting=(-0.1,), wake_cost=2.0), "c"),
        # priority 1 doubles the claim: 2 x 10/5 against 15/5
        (dict(waiting=(0.0,), priority=1), dict(waiting=(0.0, 5.0)), "b"),
        (dict(waiting=(0.0,), priority=-1), dict(waiting=(5.0,)), "c"),
        # equal scores: higher priority, then the older request, then the name
        (dict(waiting=(5.0,), priority=1), dict(waiting=(0.0,)), "b"),
        (dict(waiting=(5.0, 5.0)), dict(waiting=(0.0,)), "c"),
        (dict(waiting=(0.0,)), dict(waiting=(0.0,)), "b"),
    ],
)
def test_choice_between_waiting_models(b, c, winner):
    models = [view("a", awake=True, sleep_cost=2.0), view("b", **b), view("c", **c)]
    d = decide(models, EXCLUSIVE, 10.0)
    assert (d.target, d.victims) == (winner, ("a",))


def test_equal_score_tie_breaks_on_priority_before_age():
    # b: 2 x 5/5 = 2; c: 10/5 = 2; b has the higher priority although c waited longer
    models = [
        view("a", awake=True, sleep_cost=2.0),
        view("b", waiting=(5.0,), priority=1),
        view("c", waiting=(0.0,)),
    ]
    assert decide(models, EXCLUSIVE, 10.0).target == "b"


def test_overdue_request_goes_first_whatever_the_scores():
    # c has one request of 40 s; b has 30 requests of 5 s with priority 10. With starvation_age 40 c
    # is overdue and goes first; one second less and b's score wins.
    models = [
        view("a", awake=True),
        view("b", waiting=(95.0,) * 30, priority=10),
        view("c", waiting=(60.0,)),
    ]
    assert decide(models, Rules(capacity=1, starvation_age=40), 100.0).target == "c"
    assert decide(models, Rules(capacity=1, starvation_age=40.1), 100.0).target == "b"
    assert decide(models, Rules(capacity=1), 100.0).target == "b"


def test_overdue_requests_go_oldest_first():
    # b's three 40 s requests outscore c's one 50 s request (120 against 50 request-seconds), but both
    # are overdue (30 s): the oldest request goes first, whatever the scores
    models = [
        view("a", awake=True),
        view("b", waiting=(60.0,) * 3),
        view("c", waiting=(50.0,)),
        view("d", waiting=(99.0,) * 50),
    ]
    assert decide(models, Rules(capacity=1, starvation_age=30), 100.0).target == "c"
    assert decide(models, Rules(capacity=1, starvation_age=45), 100.0).target == "c"  # only c overdue
    assert decide(models, Rules(capacity=1), 100.0).target == "b"


def test_overdue_model_waiting_for_a_slice_keeps_others_from_jumping_ahead():
    # co-residency, 80 GiB: a (50, busy, slice until 130) and idle d (20) awake. c (overdue) needs
    # a's room; b could take d's room now, but c goes first when a's slice ends.
    models = [
        view("a", awake=True, share=50, inflight=1, awake_since=100.0),
        view("d", awake=True, share=20, awake_since=100.0, last_used=100.0),
        view("b", share=20, waiting=(119.0,) * 9),
        view("c", share=60, waiting=(100.0,)),
    ]
    rules = Rules(capacity=80, min_residency=30, starvation_age=10)
    assert decide(models, rules, 120.0) == Decision(
        recheck_at=130.0, why="waiting for a slice or grace to end"
    )
    # not overdue: b goes now into d's room (work-conserving) while c waits for a's slice
    d = decide(models, Rules(capacity=80, min_residency=30), 120.0)
    assert (d.target, d.victims) == ("b", ("d",))


def test_recheck_at_is_the_earliest_time_a_candidate_may_go():
    models = [
        view("a", awake=True, share=40, inflight=1, awake_since=100.0),
        view("e", awake=True, share=40, inflight=1, awake_since=105.0),
        view("b", share=40, waiting=(110.0,)),
        view("c", share=80, waiting=(111.0,)),
    ]
    # b can go once either slice ends (a at 130); c needs both (a at 130, then e at 135): re-plan at 130
    d = decide(models, Rules(capacity=80, min_residency=30), 120.0)
    assert (d.target, d.recheck_at) == (None, 130.0)
    d = decide(models, Rules(capacity=80, min_residency=30), 130.0)
    assert (d.target, d.victims) == ("b", ("a",))


def test_candidate_that_cannot_fit_is_reported_blocked():
    # a starting engine (not awake, not evictable) holds 70 of 80: c (30) cannot fit yet
    models = [view("boot", share=70, use=70, wakeable=False), view("c", share=30, waiting=(1.0,))]
    d = decide(models, Rules(capacity=80), 5.0)
    assert d.target is None and d.recheck_at is None
    assert d.blocked is not None and "c needs 30" in d.blocked


def test_blocked_candidate_does_not_hold_up_one_that_fits():
    models = [
        view("boot", share=70, use=70, wakeable=False),
        view("c", share=30, waiting=(0.0,)),  # the oldest, but cannot fit
        view("s", share=5, waiting=(4.0,)),
    ]
    d = decide(models, Rules(capacity=80), 5.0)
    assert (d.target, d.victims) == ("s", ())


def test_coresidency_target_that_fits_evicts_nobody_and_idle_goes_before_busy():
    models = [
        view("a", awake=True, share=30, inflight=1, awake_since=0.0, last_used=1.0),
        view("b", awake=True, share=30, awake_since=0.0, last_used=9.0),
        view("c", share=30, residual=1, waiting=(9.5,)),
        view("d", share=10, residual=1, waiting=(9.5,)),
    ]
    # c needs 29 more of 80 - 62: one victim; a's slice is over but b, used more recently, is idle
    d = decide(models, Rules(capacity=80, min_residency=5), 10.0)
    assert d.target in ("c", "d")
    assert decide(
        [m for m in models if m.name != "d"], Rules(capacity=80, min_residency=5), 10.0
    ).victims == ("b",)
    assert (
        decide([m for m in models if m.name != "c"], Rules(capacity=80, min_residency=5), 10.0).victims == ()
    )


def test_decision_explains_itself():
    models = [view("a", awake=True, sleep_cost=1.0), view("b", waiting=(8.0, 9.0), wake_cost=2.0)]
    d = decide(models, Rules(capacity=1, starvation_age=2), 10.0)
    assert d.why == "2 waiting, 3 s waited, switch cost 3 s, overdue"
    d = decide(models, EXCLUSIVE, 10.0)
    assert d.why == "2 waiting, 3 s waited, switch cost 3 s"


# ---------------------------------------------------------------------------------------- README


def readme_models(*, m0_inflight=3, m0_last=100.0, m2_priority=0):
    """switcher/README.md, "Scheduling policy", worked example."""
    return [
        view(
            "m0",
            awake=True,
            share=50,
            residual=1,
            inflight=m0_inflight,
            awake_since=97.0,
            last_used=m0_last,
            sleep_cost=0.3,
            wake_cost=0.35,
        ),
        view("m1", share=50, residual=1, waiting=(99.0, 99.5), sleep_cost=0.3, wake_cost=0.35),
        view("m2", share=30, residual=1, waiting=(98.0,), priority=m2_priority, wake_cost=0.25),
    ]


README_RULES = Rules(
    capacity=80, min_residency=5, residency_cost_multiple=4, demand_grace=0.05, starvation_age=150
)


def test_readme_worked_example():
    m0 = readme_models()[0]
    assert time_slice(m0, README_RULES) == 5
    # 1. m0 has demand: nothing moves before its slice ends at t = 102
    assert decide(readme_models(), README_RULES, 100.0).recheck_at == 102.0
    # 2. at t = 102 m1 scores 5.5 / 0.65 = 8.5 against m2's 4.0 / 0.55 = 7.3
    d = decide(readme_models(), README_RULES, 102.0)
    assert (d.target, d.victims) == ("m1", ("m0",))
    assert score(readme_models()[1], 0.65, 102.0) == pytest.approx(8.46, abs=0.01)
    assert score(readme_models()[2], 0.55, 102.0) == pytest.approx(7.27, abs=0.01)
    # 3. idle since 100.5: protected by the grace until 100.55 only; then m2 (4.6) beats m1 (4.0)
    idle = readme_models(m0_inflight=0, m0_last=100.5)
    assert decide(idle, README_RULES, 100.52).recheck_at == pytest.approx(100.55)
    d = decide(idle, README_RULES, 100.55)
    assert (d.target, d.victims) == ("m2", ("m0",))
    # 4. priority 1 doubles m2's score: 14.5
    assert decide(readme_models(m2_priority=1), README_RULES, 102.0).target == "m2"
    # 5. a request waiting 150 s goes first
    assert README_RULES.starvation_age == 150


async def test_manager_rules_come_from_the_policy():
    from switcher.config import parse_config
    from switcher.manager import Manager
    from switcher.metrics import Metrics

    policy = {
        "min_residency_seconds": 7,
        "residency_switch_cost_multiple": 3,
        "demand_grace_seconds": 0.2,
        "batch_window_seconds": 0.1,
        "queue_timeout_seconds": 90,
        "gpu_total_vram_gib": 80,
    }
    config = parse_config(
        {"models": [{"name": "a", "base_url": "http://a", "vram_gib": 50}], "policy": policy}
    )
    rules = Manager(config, Metrics()).rules
    assert rules == Rules(
        capacity=80,
        min_residency=7,
        residency_cost_multiple=3,
        demand_grace=0.2,
        batch_window=0.1,
        starvation_age=45,
    )
    exclusive = parse_config({"models": [{"name": "a", "base_url": "http://a"}]})
    assert Manager(exclusive, Metrics()).rules.capacity == 1.0


async def test_manager_snapshot_is_what_the_policy_sees():
    import asyncio

    from switcher.config import parse_config
    from switcher.manager import Manager, ModelState, Waiter
    from switcher.metrics import Metrics

    names = ["awake", "asleep", "failed", "cordoned", "blocked", "cold"]
    models = [
        {"name": n, "base_url": f"http://{n}", "vram_gib": 10, "priority": i} for i, n in enumerate(names)
    ]
    config = parse_config({"models": models, "policy": {"gpu_total_vram_gib": 80}})
    manager = Manager(config, Metrics())
    m = manager.models
    for name, state in [
        ("awake", ModelState.AWAKE),
        ("asleep", ModelState.SLEEPING),
        ("failed", ModelState.FAILED),
        ("cordoned", ModelState.SLEEPING),
        ("blocked", ModelState.SLEEPING),
    ]:
        m[name].state = state
    m["cordoned"].cordoned = True
    m["blocked"].blocked_until = 1000.0
    m["failed"].blocked_until = 99.0
    m["awake"].use, m["awake"].inflight, m["awake"].awake_since, m["awake"].last_used = 10.0, 2, 5.0, 7.0
    m["asleep"].sleep_seconds, m["asleep"].wake_seconds = 0.4, 0.6
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    done.set_result(None)
    m["asleep"].queue.extend(
        [Waiter(loop.create_future(), 3.0), Waiter(done, 4.0), Waiter(loop.create_future(), 6.0)]
    )
    snap = {v.name: v for v in manager._snapshot(100.0)}
    assert {n: snap[n].awake for n in names} == {n: n == "awake" for n in names}
    assert {n for n in names if snap[n].wakeable} == {"asleep", "failed"}
    assert manager._snapshot(98.9)[2].wakeable is False  # failed, still in its back-off
    a = snap["awake"]
    assert (a.use, a.share, a.residual, a.inflight, a.awake_since, a.last_used, a.priority) == (
        10,
        10,
        1,
        2,
        5,
        7,
        0,
    )
    s = snap["asleep"]
    assert s.waiting == (3.0, 6.0)  # an admitted (done) waiter no longer waits
    assert (s.sleep_cost, s.wake_cost, s.priority) == (0.4, 0.6, 1)
    assert (a.sleep_cost, a.wake_cost) == (PRIOR_SLEEP_SECONDS, PRIOR_WAKE_SECONDS)


def test_priority_orders_queues_without_swamping_them():
    # The example inventory's priorities 10 and 5 weigh 11 and 6: the higher one does not win
    # whatever the lower one's queue (with 2**priority it would count 32 times as much).
    models = [
        view("a", awake=True),
        view("high", waiting=(90.0,), priority=10),
        view("low", waiting=(90.0, 90.0), priority=5),
    ]
    assert decide(models, EXCLUSIVE, 100.0).target == "low"  # 6 x 20 = 120 > 11 x 10 = 110
    models[2] = view("low", waiting=(90.0, 92.0), priority=5)
    assert decide(models, EXCLUSIVE, 100.0).target == "high"  # 6 x 18 = 108 < 110
