"""The ILP's optimum equals brute force on small seeded random instances, for every objective."""

from __future__ import annotations

import random

import pytest

from scheduler.ilp import Restriction, SolverConfig, solve
from scheduler.plan import Route
from scheduler.routes import DEFAULT_LOAD, OBJECTIVES, LoadModel, check, objective_value, resident_memory_mb
from scheduler.synthetic import random_problem
from tests.scheduler.helpers import all_feasible, brute_force, combos

EXACT = SolverConfig("highs", time_limit_s=30.0, gap_rel=0.0)


def _instance(seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    while True:
        pr = random_problem(
            seed,
            tasks=rng.randint(1, 3),
            positions=rng.randint(1, 3),
            variants=rng.randint(2, 3),
            processors=rng.randint(2, 3),
            load=rng.uniform(0.2, 1.2),
            slo_tightness=rng.uniform(1.0, 2.5),
            memory_tightness=rng.uniform(0.6, 1.3),
        )
        if combos(pr) <= 60_000:
            return pr
        seed += 10_000


QUEUEING = LoadModel(queueing=True)


@pytest.mark.parametrize(("seed", "load"), [(s, DEFAULT_LOAD) for s in range(80)] + [(s, QUEUEING) for s in range(40)],
                         ids=[f"cap-{s}" for s in range(80)] + [f"queueing-{s}" for s in range(40)])
def test_ilp_matches_brute_force(seed: int, load: LoadModel) -> None:
    problem = _instance(seed)
    objective = OBJECTIVES[seed % 3]
    expected = brute_force(problem, objective, load=load)
    sol = solve(problem, objective, EXACT, load=load)
    if expected is None:
        assert sol.info.status == "infeasible"
        return
    assert sol.info.status == "optimal"
    assert check(problem, sol.routes, load=load).ok(problem.memory_budget_mb)
    got = objective_value(problem, sol.routes, objective, load)
    assert got == pytest.approx(expected[0], rel=1e-6, abs=1e-9)
    assert sol.info.objective == pytest.approx(expected[0], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(0, 24, 3))
def test_cbc_agrees_with_highs(seed: int) -> None:
    problem = _instance(seed)
    a = solve(problem, "slo", EXACT)
    b = solve(problem, "slo", SolverConfig("cbc", time_limit_s=30.0, gap_rel=0.0))
    assert a.info.status == b.info.status
    assert b.info.solver == "CBC"
    if a.found:
        assert objective_value(problem, b.routes, "slo") == pytest.approx(
            objective_value(problem, a.routes, "slo"), rel=1e-6, abs=1e-9
        )


@pytest.mark.parametrize("seed", range(100, 120))
def test_restricted_ilp_matches_brute_force(seed: int) -> None:
    # The baselines' programs: whole variants only, and/or one processor per task.
    problem = _instance(seed)
    whole, single = seed % 2 == 0, seed % 4 < 2
    restriction = Restriction(whole_variant=whole, single_processor=single)

    def allowed(r: Route) -> bool:
        return (not whole or len(set(r.variants)) == 1) and (
            not single or len(set(r.processors)) == 1
        )

    expected = brute_force(problem, "slo", allowed)
    sol = solve(problem, "slo", EXACT, restriction)
    if expected is None:
        assert sol.info.status == "infeasible"
        return
    assert sol.info.status == "optimal"
    assert all(allowed(r) for r in sol.routes.values())
    assert objective_value(problem, sol.routes, "slo") == pytest.approx(
        expected[0], rel=1e-6, abs=1e-9
    )


def test_instances_cover_both_outcomes() -> None:
    # Guards the optimality test against a generator that makes too few feasible instances.
    feasible = sum(
        brute_force(_instance(s), OBJECTIVES[s % 3]) is not None for s in range(80)
    )
    assert 50 <= feasible <= 75, feasible
    # Fewer with the queueing waits in the latency constraints (47 of 80), but still both outcomes.
    queued = sum(brute_force(_instance(s), OBJECTIVES[s % 3], load=QUEUEING) is not None for s in range(80))
    assert 40 <= queued < feasible, queued


def _multiplicative(problem, seed: int):  # type: ignore[no-untyped-def]
    """The same instance with log-retained-fraction terms above a chance-level floor."""
    import dataclasses
    import math

    rng = random.Random(seed)
    tasks = []
    for t in problem.tasks:
        floor = 0.1
        positions = tuple(
            tuple(dataclasses.replace(o, accuracy_delta=math.log(rng.uniform(0.6, 1.0))) for o in pos)
            for pos in t.positions
        )
        tasks.append(dataclasses.replace(t, positions=positions, accuracy_floor=floor, base_accuracy=0.95,
                                         min_accuracy=rng.uniform(0.5, 0.9)))
    return dataclasses.replace(problem, tasks=tuple(tasks))


@pytest.mark.parametrize("seed", range(20))
def test_ilp_matches_brute_force_with_multiplicative_accuracy(seed: int) -> None:
    problem = _multiplicative(_instance(seed), seed)
    expected = brute_force(problem, "slo")
    sol = solve(problem, "slo", EXACT)
    if expected is None:
        assert sol.info.status == "infeasible"
        return
    assert sol.info.status == "optimal"
    for t in problem.tasks:
        acc = sol.routes[t.name].accuracy
        assert acc is not None and acc >= t.min_accuracy - 1e-9
    assert objective_value(problem, sol.routes, "slo") == pytest.approx(expected[0], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(0, 60, 3))
@pytest.mark.parametrize("slack", [0.0, 0.05])
def test_memory_stage_finds_the_least_memory_within_its_slack(seed: int, slack: float) -> None:
    problem = _instance(seed)
    first = brute_force(problem, "slo")
    if first is None:
        return
    bound = first[0] * (1 + slack) + 1e-9
    least = min(
        resident_memory_mb(problem, [d for r in routes.values() for d in r.digests])
        for value, routes in all_feasible(problem, "slo") if value <= bound
    )
    sol = solve(problem, "slo", EXACT, memory_slack=slack)
    assert sol.info.objective == pytest.approx(first[0], rel=1e-6, abs=1e-9)  # the first stage's value
    assert objective_value(problem, sol.routes, "slo") <= bound + 1e-7
    got = resident_memory_mb(problem, [d for r in sol.routes.values() for d in r.digests])
    assert got == pytest.approx(least, rel=1e-6, abs=1e-9)
