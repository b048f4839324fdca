"""Online decisions: accuracy when there is time, speed under backlog, Band's per-block placement, switching."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler import registry
from scheduler.policies.sparseloom import SparseLoomPolicy
from scheduler.policy import Job
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec
from tests.scheduler.helpers import FixedQueues

# One task, two positions; "acc" is accurate but slow, "fast" is quick but less accurate.
_POS = tuple(
    (
        Block("acc", f"acc{p}", 10.0, {"cpu": 4.0, "gpu": 3.0}, 0.0),
        Block("fast", f"fast{p}", 5.0, {"cpu": 1.0, "gpu": 0.8}, -0.01),
    )
    for p in range(2)
)
TASK = TaskSpec(
    "t",
    "m",
    latency_slo_ms=10.0,
    min_accuracy=0.85,
    rate_hz=10.0,
    positions=_POS,
    output_mb=(0.5, 0.5),
    base_accuracy=0.9,
)
PROBLEM = Problem(
    (TASK,),
    (ProcessorInfo("cpu", "cpu"), ProcessorInfo("gpu", "gpu")),
    memory_budget_mb=100.0,
    transfer_latency_ms=0.1,
    transfer_mb_per_ms=1.0,
)


def test_idle_queues_get_the_most_accurate_route_and_busy_ones_a_faster_one() -> None:
    policy = SparseLoomPolicy(dispatch="accuracy")
    plan = policy.plan(PROBLEM)
    alts = plan.alternatives["t"]
    assert len(alts) >= 2
    idle = policy.decide("t", plan, FixedQueues())
    assert idle.accuracy == max(a.accuracy or 0 for a in alts)
    busy = policy.decide("t", plan, FixedQueues({"gpu": 5.0, "cpu": 5.0}))
    assert busy.latency_ms < idle.latency_ms
    assert busy.latency_ms + 5.0 <= 10.0


def test_routes_with_blocks_not_resident_are_skipped() -> None:
    policy = SparseLoomPolicy(dispatch="accuracy")
    plan = policy.plan(PROBLEM)
    r = policy.decide("t", plan, FixedQueues(resident=frozenset({"fast0", "fast1"})))
    assert r.variants == ("fast", "fast")


def _job(plan, request=0, position=0, enqueue_ms=0.0, deadline_ms=10.0, previous=None):  # type: ignore[no-untyped-def]
    return Job(request, "t", plan.routes["t"], position, enqueue_ms, deadline_ms, previous)


def test_band_hands_a_job_to_an_idle_processor_away_from_a_busy_one() -> None:
    for name in ("band-lsf", "band-heft"):
        policy = registry.create(name)
        assert policy.queue == "global" and policy.drop_late
        plan = policy.plan(PROBLEM)
        planned = plan.routes["t"]
        busy = {k: (100.0 if k in planned.processors else 0.0) for k in ("cpu", "gpu")}
        idle = frozenset(k for k, b in busy.items() if b == 0.0)
        out = policy.schedule([_job(plan, deadline_ms=50.0)], idle, plan, FixedQueues(busy))
        # The whole remaining variant runs on the idle processor: one subgraph of both blocks.
        assert out == [(0, next(iter(idle)), 2)]
        # No idle processor: nothing is handed out, the job waits.
        assert policy.schedule([_job(plan, deadline_ms=500.0)], frozenset(), plan, FixedQueues(busy)) == []


def test_band_lsf_orders_by_slack_and_heft_by_longest_finish() -> None:
    """One idle processor, two queued jobs: the first arrived with a loose deadline, the second with a
    tight one. LSF serves the least slack first (the second); HEFT the job with the largest expected
    finish, which is the first (it must still run both blocks), whatever the deadlines."""
    lsf, heft = registry.create("band-lsf"), registry.create("band-heft")
    plan = lsf.plan(PROBLEM)
    q = FixedQueues({"cpu": 0.0, "gpu": 50.0})
    jobs = [_job(plan, 0, position=0, deadline_ms=40.0), _job(plan, 1, position=1, deadline_ms=3.0)]
    assert lsf.schedule(jobs, frozenset({"cpu"}), plan, q)[0][:2] == (1, "cpu")
    assert heft.schedule(jobs, frozenset({"cpu"}), plan, q)[0][:2] == (0, "cpu")


def test_band_lsf_drops_what_cannot_finish_in_time_and_heft_only_what_is_already_late() -> None:
    lsf, heft = registry.create("band-lsf"), registry.create("band-heft")
    plan = lsf.plan(PROBLEM)
    q = FixedQueues({"cpu": 0.0, "gpu": 0.0}, now_ms=5.0)
    idle = frozenset({"cpu", "gpu"})
    hopeless = _job(plan, deadline_ms=5.5)  # both blocks take at least 1.6 ms
    assert lsf.schedule([hopeless], idle, plan, q) == [(0, None, 0)]
    assert heft.schedule([hopeless], idle, plan, q)[0][1] is not None
    late = _job(plan, deadline_ms=4.0)
    assert heft.schedule([late], idle, plan, q) == [(0, None, 0)]


def test_band_shortest_plan_is_the_earliest_finishing_placement() -> None:
    import itertools
    import random

    from scheduler.dispatch import finish_ms
    from scheduler.policies.band import shortest
    from scheduler.synthetic import random_problem

    problem = random_problem(4, tasks=2, positions=4, variants=2, processors=3, memory_tightness=3.0)
    lsf = registry.create("band-lsf")
    plan = lsf.plan(problem)
    rng = random.Random(0)
    for _ in range(30):
        q = FixedQueues({k.name: rng.uniform(0.0, 6.0) for k in problem.processors})
        for t in problem.tasks:
            units = plan.block_latency_ms[t.name]
            best = min(
                finish_ms(lsf_route(plan, t.name, seq), {}, q)
                for seq in itertools.product(*[list(u) for u in units])
            )
            job = Job(0, t.name, plan.routes[t.name], 0, 0.0, 1e9, None)
            procs, finish, _ = shortest(job, plan, {}, q)
            assert finish == pytest.approx(best)
            assert finish_ms(lsf_route(plan, t.name, procs), {}, q) == pytest.approx(best)


def test_switch_meets_a_tighter_slo_without_the_ilp() -> None:
    policy = SparseLoomPolicy(dispatch="accuracy")
    plan = policy.plan(PROBLEM)
    tighter = replace(PROBLEM, tasks=(replace(TASK, latency_slo_ms=2.5),))
    switched = policy.switch(plan, tighter)
    assert switched.feasible, switched.explanation
    assert switched.info.solver == "switch"
    assert switched.routes["t"].latency_ms <= 2.5


def test_switch_fits_a_smaller_memory_budget_or_asks_for_a_replan() -> None:
    policy = SparseLoomPolicy(dispatch="accuracy")
    plan = policy.plan(PROBLEM)
    smaller = replace(PROBLEM, memory_budget_mb=10.0)
    switched = policy.switch(plan, smaller)
    assert switched.feasible
    assert switched.routes["t"].memory_mb <= 10.0
    impossible = policy.switch(plan, replace(PROBLEM, memory_budget_mb=1.0))
    assert impossible.info.status == "needs_replan"
    assert any(d.constraint == "memory" for d in impossible.diagnoses)
    assert not policy.replan(replace(PROBLEM, memory_budget_mb=1.0), plan).feasible


def test_plan_first_dispatch_keeps_the_planned_route_when_in_time() -> None:
    policy = SparseLoomPolicy(dispatch="plan")
    plan = policy.plan(PROBLEM)
    assert policy.decide("t", plan, FixedQueues()) == plan.routes["t"]
    late = policy.decide("t", plan, FixedQueues({"gpu": 9.5, "cpu": 9.5}))
    assert late.latency_ms == min(a.latency_ms for a in plan.alternatives["t"])


def test_place_dispatch_moves_the_planned_blocks_off_a_busy_processor() -> None:
    policy = SparseLoomPolicy()  # dispatch="place", the default
    plan = policy.plan(PROBLEM)
    planned = plan.routes["t"]
    assert policy.decide("t", plan, FixedQueues()) == planned
    busy = next(iter(set(planned.processors)))
    idle = "cpu" if busy == "gpu" else "gpu"
    moved = policy.decide("t", plan, FixedQueues({busy: 6.0}))
    # Same stitched variant (same blocks), other processors, in time.
    assert moved.digests == planned.digests and moved.processors != planned.processors
    assert idle in moved.processors
    assert moved.latency_ms <= PROBLEM.tasks[0].latency_slo_ms
    # Both processors too busy for the planned blocks: the fastest alternative in time instead.
    late = policy.decide("t", plan, FixedQueues({"gpu": 7.5, "cpu": 7.5}))
    assert late.latency_ms == min(a.latency_ms for a in plan.alternatives["t"])
    # Re-planning (and switching) keeps what placement needs.
    switched = policy.switch(plan, replace(PROBLEM, tasks=(replace(TASK, latency_slo_ms=4.0),)))
    assert len(switched.block_latency_ms["t"]) == len(switched.routes["t"].digests)


def lsf_route(plan, task, seq):  # type: ignore[no-untyped-def]
    from scheduler.dispatch import with_processors

    return with_processors(
        plan.routes[task],
        tuple(seq),
        plan.block_latency_ms[task],
        plan.block_transfer_ms[task],
    )


def test_hold_keeps_a_fallback_through_a_burst_and_returns_once_the_queues_calm() -> None:
    from scheduler.dispatch import HOLD_SLOS, dispatch
    from scheduler.planner import with_unit_latencies

    base = SparseLoomPolicy(dispatch="accuracy").plan(PROBLEM)
    accurate = max(base.alternatives["t"], key=lambda r: r.accuracy or 0.0)
    plan = with_unit_latencies(replace(base, routes={"t": accurate}), PROBLEM)
    hold_for = HOLD_SLOS * TASK.latency_slo_ms
    busy, calm = {"cpu": 8.0, "gpu": 8.0}, {}
    # The queues flip between busy and calm on every request.
    times = [10.0 * i for i in range(8)]
    loads = [busy if i % 2 == 0 else calm for i in range(8)]
    place = [dispatch("place", "t", plan, FixedQueues(q, now_ms=t)).variants for t, q in zip(times, loads)]
    held = FixedQueues()
    hold = []
    for t, q in zip(times, loads):
        held.backlog, held.now_ms = q, t
        hold.append(dispatch("hold", "t", plan, held).variants)
    assert place == [("fast", "fast"), accurate.variants] * 4  # one switch per request
    assert hold == [("fast", "fast")] * 8  # one switch, then held
    # After the hold time, calm queues bring it back; before it, they do not.
    held.backlog, held.now_ms = calm, hold_for - 1.0
    assert dispatch("hold", "t", plan, held).variants == ("fast", "fast")
    held.now_ms = hold_for + 1.0
    assert dispatch("hold", "t", plan, held).variants == accurate.variants
    # A little queue (more than half the slack) keeps it on the fallback even after the hold time.
    held.memo.clear()
    held.backlog, held.now_ms = busy, 0.0
    dispatch("hold", "t", plan, held)
    held.backlog, held.now_ms = {"cpu": 3.0, "gpu": 3.0}, hold_for + 1.0
    assert dispatch("hold", "t", plan, held).variants == ("fast", "fast")
