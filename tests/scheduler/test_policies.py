"""One test body over every registered policy: valid routes, memory budget, empty and infeasible workloads."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from scheduler import registry
from scheduler.plan import Plan
from scheduler.problem import Problem
from scheduler.routes import check, evaluate, resident_memory_mb
from scheduler.synthetic import random_problem
from tests.scheduler.helpers import FixedQueues

GENEROUS = random_problem(
    7,
    tasks=3,
    positions=3,
    variants=3,
    processors=3,
    load=0.3,
    slo_tightness=5.0,
    memory_tightness=3.0,
)
TIGHT_MEMORY = replace(GENEROUS, memory_budget_mb=1.0)


def _assert_valid(problem: Problem, plan: Plan) -> None:
    assert set(plan.routes) == {t.name for t in problem.tasks}
    for t in problem.tasks:
        r = plan.routes[t.name]
        assert len(r.options) == len(r.processors) == len(t.positions)
        for p, (o, k) in enumerate(zip(r.options, r.processors)):
            assert k in t.positions[p][o].latency_ms
        again = evaluate(problem, t, r.options, r.processors)
        assert r.latency_ms == pytest.approx(again.latency_ms)
        assert r.digests == again.digests
        for alt in plan.alternatives.get(t.name, ()):
            assert alt.task == t.name and len(alt.options) == len(t.positions)
    json_text = plan.to_json()
    assert (
        plan.info.solver in json_text
        and plan.policy == json_text.split('"policy": "')[1].split('"')[0]
    )


@pytest.mark.parametrize("name", registry.names())
def test_policy_plans_valid_routes_within_budget(name: str) -> None:
    policy = registry.create(name)
    plan = policy.plan(GENEROUS)
    _assert_valid(GENEROUS, plan)
    assert plan.feasible, plan.explanation
    assert check(GENEROUS, plan.routes).ok(GENEROUS.memory_budget_mb)
    loaded = plan.resident | frozenset(plan.preload)
    assert resident_memory_mb(GENEROUS, loaded) <= GENEROUS.memory_budget_mb + 1e-9
    for t in GENEROUS.tasks:
        busy = {k.name: 50.0 for k in GENEROUS.processors}
        for state in (FixedQueues(), FixedQueues(busy)):
            r = policy.decide(t.name, plan, state)
            assert r.task == t.name
            again = evaluate(GENEROUS, t, r.options, r.processors)
            assert r.latency_ms == pytest.approx(again.latency_ms)
            assert r.accuracy is None or r.accuracy >= t.min_accuracy - 1e-9


@pytest.mark.parametrize("name", registry.names())
def test_policy_handles_empty_workload(name: str) -> None:
    plan = registry.create(name).plan(replace(GENEROUS, tasks=(), transitions={}))
    assert plan.routes == {} and plan.feasible
    assert plan.resident == frozenset()


@pytest.mark.parametrize("name", registry.names())
def test_policy_handles_infeasible_workload(name: str) -> None:
    policy = registry.create(name)
    plan = policy.plan(TIGHT_MEMORY)
    assert not plan.feasible
    assert plan.info.status == "infeasible"
    assert any(d.constraint == "memory" for d in plan.diagnoses)
    _assert_valid(
        TIGHT_MEMORY, plan
    )  # best-effort routes, so a simulator can still run it
    for t in TIGHT_MEMORY.tasks:
        assert policy.decide(t.name, plan, FixedQueues()).task == t.name


def test_registry_rejects_unknown_names_listing_known_ones() -> None:
    with pytest.raises(ValueError, match="sv-ao-np") as err:
        registry.create("nope")
    assert "nope" in str(err.value)
    with pytest.raises(ValueError, match="objective"):
        registry.create("sparseloom", objective="fastest")


def test_registry_names_every_paper_baseline() -> None:
    expected = {
        "sparseloom",
        "sv-ao-np",
        "sv-ao-p",
        "sv-lo-np",
        "sv-lo-p",
        "av-np",
        "av-p",
        "band-lsf",
        "band-heft",
    }
    assert set(registry.names()) == expected
    assert all(registry.create(n).name == n for n in expected)


def test_stitching_is_never_worse_than_whole_variants() -> None:
    # SparseLoom's search space contains AV-P's, with the same objective and solver.
    for seed in range(5):
        problem = random_problem(
            seed,
            tasks=3,
            positions=3,
            variants=3,
            processors=3,
            slo_tightness=2.0,
            memory_tightness=1.5,
        )
        ours = registry.create("sparseloom", gap_rel=0.0).plan(problem)
        av = registry.create("av-p", gap_rel=0.0).plan(problem)
        if av.feasible:
            assert ours.feasible
            assert ours.info.objective is not None and av.info.objective is not None
            assert ours.info.objective <= av.info.objective + 1e-9


def test_single_variant_policies_use_one_variant_and_np_one_processor() -> None:
    for name in ("sv-ao-np", "sv-lo-np", "sv-ao-p", "sv-lo-p", "av-np"):
        plan = registry.create(name).plan(GENEROUS)
        for r in plan.routes.values():
            assert len(set(r.variants)) == 1
            if name.endswith("-np"):
                assert len(set(r.processors)) == 1
    ao = registry.create("sv-ao-p").plan(GENEROUS)
    lo = registry.create("sv-lo-p").plan(GENEROUS)
    for t in GENEROUS.tasks:
        a, b = ao.routes[t.name], lo.routes[t.name]
        assert a.accuracy is not None and b.accuracy is not None
        assert a.accuracy >= b.accuracy - 1e-12
        assert b.accuracy >= t.min_accuracy - 1e-9
        assert math.isfinite(a.latency_ms)


@pytest.mark.parametrize("name", registry.names())
def test_policy_survives_a_block_no_processor_can_run(name: str) -> None:
    t0, t1 = GENEROUS.tasks[0], GENEROUS.tasks[1]
    stuck = replace(
        t1,
        positions=(tuple(replace(o, latency_ms={"tpu": 1.0}) for o in t1.positions[0]),)
        + t1.positions[1:],
    )
    problem = replace(GENEROUS, tasks=(t0, stuck))
    plan = registry.create(name).plan(problem)
    assert not plan.feasible
    assert [(d.task, d.constraint) for d in plan.diagnoses] == [(t1.name, "placement")]
    assert t0.name in plan.routes and t1.name not in plan.routes


def test_unknown_policy_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="time_limit_s"):
        registry.create("av-p", timelimit=3)


def test_plan_json_names_blocks_processors_numbers_and_solver() -> None:
    import json

    plan = registry.create("sparseloom").plan(GENEROUS)
    data = json.loads(plan.to_json())
    assert data["solve"]["solver"] == "HiGHS" and data["solve"]["status"] == "optimal"
    assert data["solve"]["wall_s"] > 0 and data["solve"]["gap"] is not None
    for t in GENEROUS.tasks:
        entry = data["tasks"][t.name]
        r = plan.routes[t.name]
        assert [b["processor"] for b in entry["blocks"]] == list(r.processors)
        assert [b["digest"] for b in entry["blocks"]] == list(r.digests)
        assert [b["variant"] for b in entry["blocks"]] == list(r.variants)
        assert entry["latency_ms"] == pytest.approx(r.latency_ms)
        assert entry["accuracy"] == r.accuracy and entry["memory_mb"] == r.memory_mb
    assert "block 0:" in plan.describe()
    infeasible = json.loads(registry.create("sparseloom").plan(TIGHT_MEMORY).to_json())
    assert infeasible["feasible"] is False and infeasible["explanation"]
    assert infeasible["diagnoses"][0]["constraint"] == "memory"


def _unknown_accuracy(problem: Problem) -> Problem:
    """The problem as for a model without evaluation data: no base accuracy, no accuracy terms."""
    tasks = tuple(
        replace(t, base_accuracy=None, accuracy_floor=None,
                positions=tuple(tuple(replace(o, accuracy_delta=0.0) for o in pos) for pos in t.positions))
        for t in problem.tasks
    )
    return replace(problem, tasks=tasks)


def _with_dense(problem: Problem) -> Problem:
    """The synthetic problem with its first variant named "dense" (the synthetic names are v0, v1...)."""
    first = problem.tasks[0].positions[0][0].variant
    tasks = tuple(
        replace(t, positions=tuple(tuple(replace(o, variant="dense") if o.variant == first else o for o in pos)
                                   for pos in t.positions))
        for t in problem.tasks
    )
    return replace(problem, tasks=tasks)


def test_sv_ao_serves_dense_when_accuracy_is_unknown_and_sv_lo_the_fastest() -> None:
    problem = _unknown_accuracy(_with_dense(GENEROUS))
    for name in ("sv-ao-np", "sv-ao-p"):
        plan = registry.create(name).plan(problem)
        assert all(set(r.variants) == {"dense"} for r in plan.routes.values()), name
    lo = registry.create("sv-lo-np").plan(problem)
    ao = registry.create("sv-ao-np").plan(problem)
    assert any(set(r.variants) != {"dense"} for r in lo.routes.values())
    assert all(lo.routes[t].latency_ms <= ao.routes[t].latency_ms + 1e-9 for t in ao.routes)


def test_sv_keeps_its_variant_across_an_slo_change() -> None:
    for name in ("sv-ao-np", "sv-ao-p", "sv-lo-np", "sv-lo-p"):
        policy = registry.create(name)
        plan = policy.plan(GENEROUS)
        t = GENEROUS.tasks[0]
        tighter = replace(GENEROUS, tasks=(replace(t, latency_slo_ms=t.latency_slo_ms / 4), *GENEROUS.tasks[1:]))
        again = policy.replan(tighter, plan)
        assert {n: r.options for n, r in again.routes.items()} == {n: r.options for n, r in plan.routes.items()}
        assert again.slo_ms[t.name] == pytest.approx(t.latency_slo_ms / 4)


@pytest.mark.parametrize("name", ["sv-ao-p", "sv-lo-p", "av-p", "sparseloom"])
def test_partitioned_policies_place_their_blocks_per_request_with_the_same_machinery(name: str) -> None:
    """P baselines and ours: the planned variant's blocks move off a busy processor (the same
    ``planned_or_placed``); only the variant choice differs."""
    policy = registry.create(name)
    plan = policy.plan(GENEROUS)
    for t in GENEROUS.tasks:
        planned = plan.routes[t.name]
        assert policy.decide(t.name, plan, FixedQueues()) == planned
        busy = {k.name: (1e3 if k.name in planned.processors else 0.0) for k in GENEROUS.processors}
        moved = policy.decide(t.name, plan, FixedQueues(busy))
        if any(k not in planned.processors for k in plan.block_latency_ms[t.name][0]):
            assert moved.processors != planned.processors


@pytest.mark.parametrize("name", ["sv-ao-np", "sv-lo-np", "av-np"])
def test_np_baselines_move_a_whole_variant_to_one_processor(name: str) -> None:
    policy = registry.create(name)
    plan = policy.plan(GENEROUS)
    for t in GENEROUS.tasks:
        planned = plan.routes[t.name]
        busy = {k.name: (1e3 if k.name in planned.processors else 0.0) for k in GENEROUS.processors}
        moved = policy.decide(t.name, plan, FixedQueues(busy))
        assert len(set(moved.processors)) == 1 and moved.options == planned.options


def test_av_and_sparseloom_share_the_dispatch_rule() -> None:
    from scheduler.policies.adaptive_variant import DISPATCH_DEFAULT

    assert registry.create("av-np").dispatch == registry.create("sparseloom").dispatch == DISPATCH_DEFAULT  # type: ignore[attr-defined]
    for name in registry.names():
        assert registry.create(name, drop_late=True).drop_late  # dropping is offered to every policy


@pytest.mark.parametrize("name", registry.names())
def test_every_policy_declares_whether_it_switches_at_once(name: str) -> None:
    """``switch`` is on the protocol: the engines call it on every policy, never probing for it.
    Only SparseLoom has a quick switch; the others keep their plan until the re-plan."""
    policy = registry.create(name)
    plan = policy.plan(GENEROUS)
    task = GENEROUS.tasks[0]
    tighter = replace(GENEROUS, tasks=(replace(task, latency_slo_ms=task.latency_slo_ms / 2), *GENEROUS.tasks[1:]))
    switched = policy.switch(plan, tighter)
    if name == "sparseloom":
        assert switched is not None
        assert switched.slo_ms[task.name] == pytest.approx(task.latency_slo_ms / 2)
        _assert_valid(tighter, switched)
    else:
        assert switched is None
