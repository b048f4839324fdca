"""Task switches on a shared backbone, solvable by hand: a switch loads only the next task's
blocks that are not resident, at the storage bandwidth, and the pre-loader's blocks count
against the memory budget (and make the switch free when they fit)."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.preload import correlated_blocks
from scheduler.problem import Block, Problem, TaskSpec
from scheduler.routes import pareto_routes
from sparseloom.sim import Arrivals, simulate
from tests.sparseloom.simdoubles import FixedPolicy, problem_of

# Storage 2 MB/ms. Both tasks run the shared 10 MB block "trunk" (1 ms), then their own head:
# a's 4 MB, b's 6 MB (1 ms each).
STORAGE_MB_PER_MS = 2.0
ROUTES = {"a": ((0, 0), ("cpu", "cpu")), "b": ((0, 0), ("cpu", "cpu"))}


def _task(name: str, head_mb: float) -> TaskSpec:
    return TaskSpec(
        name=name,
        model="backbone",
        latency_slo_ms=100.0,
        min_accuracy=0.0,
        rate_hz=1.0,
        positions=(
            (Block("dense", "trunk", 10.0, {"cpu": 1.0}),),
            (Block("dense", f"{name}-head", head_mb, {"cpu": 1.0}),),
        ),
        output_mb=(0.0, 0.0),
    )


def _problem(budget_mb: float) -> Problem:
    return problem_of(
        [_task("a", 4.0), _task("b", 6.0)],
        memory_budget_mb=budget_mb,
        storage_mb_per_ms=STORAGE_MB_PER_MS,
        transitions={"a": {"b": 3.0}, "b": {"a": 3.0}},
    )


def _a_then_b() -> Arrivals:
    return Arrivals(0, 2.0, {"a": np.asarray([100.0]), "b": np.asarray([500.0])})


def test_switch_loads_only_the_missing_blocks_at_storage_bandwidth() -> None:
    res = simulate(_problem(100.0), FixedPolicy("fixed", ROUTES), _a_then_b())
    # a, cold: trunk loads 100-105 and runs 105-106; a-head loads 105-107 and runs 107-108.
    assert res.latencies_ms["a"][0] == pytest.approx(10 / 2 + 4 / 2 + 1.0)
    # b: the trunk is resident; only b-head (6 MB) loads, 500-503, while the trunk runs 500-501.
    missing_mb = 6.0
    assert res.latencies_ms["b"][0] == pytest.approx(missing_mb / STORAGE_MB_PER_MS + 1.0)
    assert res.loads == 3
    assert res.load_ms == pytest.approx((10.0 + 4.0 + missing_mb) / STORAGE_MB_PER_MS)


def test_correlated_preload_makes_the_switch_free_when_it_fits_the_budget() -> None:
    # a's route (14 MB) is resident; 20 MB leaves room for b's head exactly.
    problem = _problem(20.0)
    resident = frozenset({"trunk", "a-head"})
    candidates = {t.name: pareto_routes(problem, t) for t in problem.tasks}
    preload = correlated_blocks(problem, candidates, 20.0 - 14.0, resident, "a")
    assert preload == ("b-head",)
    res = simulate(problem, FixedPolicy("fixed", ROUTES, resident=resident, preload=preload), _a_then_b())
    assert res.latencies_ms["a"][0] == pytest.approx(2.0)  # all loaded at time 0
    assert res.latencies_ms["b"][0] == pytest.approx(2.0)  # the switch reads nothing
    assert res.loads == 3 and res.evictions == 0
    assert res.peak_memory_mb == pytest.approx(20.0)


def test_preload_that_does_not_fit_is_not_loaded_and_the_switch_pays() -> None:
    # One MB less: b's head does not fit beside a's route, so the pre-loader leaves it out,
    # and the switch loads it (evicting a's head, which no dispatched request needs).
    problem = _problem(19.0)
    resident = frozenset({"trunk", "a-head"})
    candidates = {t.name: pareto_routes(problem, t) for t in problem.tasks}
    assert correlated_blocks(problem, candidates, 19.0 - 14.0, resident, "a") == ()
    forced = FixedPolicy("fixed", ROUTES, resident=resident, preload=("b-head",))
    res = simulate(problem, forced, _a_then_b())
    # Even when a plan asks for it, the engine skips a pre-load that would break the budget.
    assert res.latencies_ms["b"][0] == pytest.approx(6.0 / STORAGE_MB_PER_MS + 1.0)
    assert res.peak_memory_mb <= 19.0 + 1e-9
    assert res.evictions == 1
