"""Infeasibility explanations name the task, the constraint and the best achievable value; statuses are read
from PuLP's sol_status."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pulp
import pytest

from scheduler.explain import diagnose
from scheduler.ilp import SolverConfig, map_status, solve
from scheduler.synthetic import random_problem
from tests.scheduler.helpers import all_routes

BASE = random_problem(
    5,
    tasks=2,
    positions=2,
    variants=3,
    processors=2,
    slo_tightness=4.0,
    memory_tightness=3.0,
)


def test_unreachable_latency_reports_the_fastest_route() -> None:
    t = BASE.tasks[1]
    problem = replace(BASE, tasks=(BASE.tasks[0], replace(t, latency_slo_ms=0.01)))
    (d,) = diagnose(problem)
    assert (d.task, d.constraint, d.required) == (t.name, "latency", 0.01)
    fastest = min(
        r.latency_ms
        for r in all_routes(problem, t)
        if r.accuracy is None or r.accuracy >= t.min_accuracy
    )
    assert d.achievable == pytest.approx(fastest)
    assert t.name in d.message and "ms" in d.message


def test_unreachable_accuracy_reports_the_most_accurate_route() -> None:
    t = BASE.tasks[0]
    problem = replace(BASE, tasks=(replace(t, min_accuracy=0.99), BASE.tasks[1]))
    found = diagnose(problem)
    acc = [d for d in found if d.constraint == "accuracy"]
    assert [d.task for d in acc] == [t.name]
    best = max(r.accuracy or 0.0 for r in all_routes(problem, t))
    assert acc[0].achievable == pytest.approx(best)


def test_joint_memory_shortage_reports_the_memory_needed() -> None:
    problem = replace(BASE, memory_budget_mb=5.0)
    found = diagnose(problem)
    assert found and all(d.constraint == "memory" for d in found)
    assert all(d.achievable is not None and d.achievable > 5.0 for d in found)


def test_utilisation_overload_is_explained() -> None:
    problem = replace(BASE, tasks=tuple(replace(t, rate_hz=5000.0) for t in BASE.tasks))
    found = diagnose(problem)
    assert found and {d.constraint for d in found} <= {"utilisation"}
    assert all(d.achievable is not None and d.achievable > 1.0 for d in found)


def test_feasible_problem_has_no_diagnosis() -> None:
    assert diagnose(BASE) == ()


def test_status_comes_from_sol_status() -> None:
    assert map_status(pulp.LpSolutionOptimal) == "optimal"
    # PuLP's status says Optimal after a time limit; the solution status says integer-feasible.
    assert (
        map_status(pulp.LpSolutionIntegerFeasible, pulp.LpStatusOptimal) == "feasible"
    )
    assert map_status(pulp.LpSolutionInfeasible) == "infeasible"
    assert (
        map_status(pulp.LpSolutionNoSolutionFound, pulp.LpStatusInfeasible)
        == "infeasible"
    )
    assert (
        map_status(pulp.LpSolutionNoSolutionFound, pulp.LpStatusNotSolved)
        == "no_solution"
    )


def test_time_limited_solve_is_not_called_optimal() -> None:
    big = random_problem(1, tasks=8, positions=8, variants=10, processors=4)
    sol = solve(big, "throughput", SolverConfig("highs", time_limit_s=0.3, gap_rel=0.0))
    assert sol.info.status in ("feasible", "no_solution")
    if sol.info.status == "feasible":
        assert sol.info.gap is not None and sol.info.gap > 0.0


def test_solving_writes_nothing_to_stdout() -> None:
    # HiGHS prints a banner on fd 1 when a process builds its first solver; JSON on stdout must survive.
    code = (
        "from scheduler.synthetic import random_problem\n"
        "from scheduler.ilp import solve\n"
        "solve(random_problem(1, 2, 2, 2, 2, memory_tightness=3.0), 'slo')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    )
    assert out.stdout == ""


def test_best_effort_lets_load_give_before_accuracy() -> None:
    from scheduler.policies.sparseloom import SparseLoomPolicy
    from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec

    # At 900 requests/s the accurate variant needs the CPU 1.8x over; the fast one (a tenth of the
    # time) fits but misses the accuracy SLO. Best effort keeps the SLO that fails every request.
    pos = (Block("accurate", "d0", 1.0, {"cpu": 2.0}, 0.0), Block("fast", "d1", 1.0, {"cpu": 0.2}, -0.1))
    task = TaskSpec("t", "m", 10.0, 0.85, 900.0, (pos,), (0.0,), base_accuracy=0.9)
    plan = SparseLoomPolicy().plan(Problem((task,), (ProcessorInfo("cpu", "cpu"),), 100.0))
    assert not plan.feasible and any(d.constraint == "utilisation" for d in plan.diagnoses)
    assert plan.routes["t"].variants == ("accurate",)
    # No choice meets the accuracy SLO: then accuracy gives too, rather than no plan at all.
    worse = TaskSpec("t", "m", 10.0, 0.95, 900.0, (pos,), (0.0,), base_accuracy=0.9)
    assert SparseLoomPolicy().plan(Problem((worse,), (ProcessorInfo("cpu", "cpu"),), 100.0)).routes["t"]


def test_best_effort_keeps_within_the_memory_budget() -> None:
    from scheduler.policies.sparseloom import SparseLoomPolicy
    from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec

    # Overloaded either way; the faster variant would need more memory than the budget holds, so best
    # effort takes the one that fits (over the budget, every request would wait for loads).
    pos = (Block("big", "d0", 30.0, {"cpu": 1.5}), Block("small", "d1", 10.0, {"cpu": 2.0}))
    task = TaskSpec("t", "m", 10.0, 0.0, 900.0, (pos,), (0.0,))
    plan = SparseLoomPolicy().plan(Problem((task,), (ProcessorInfo("cpu", "cpu"),), 20.0))
    assert not plan.feasible
    assert plan.routes["t"].variants == ("small",)
