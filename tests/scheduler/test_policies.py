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
