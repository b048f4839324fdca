"""Every registered policy runs in the simulator: one test body, parameterised over the registry."""

from __future__ import annotations

import pytest

from scheduler import registry
from scheduler.synthetic import random_problem
from sparseloom.core.slo import retarget
from sparseloom.sim import Arrivals, SLOChangeEvent, make_arrivals, simulate
from sparseloom.workload import Poisson


@pytest.mark.parametrize("name", registry.names())
def test_every_policy_simulates_within_memory_and_replans(name: str) -> None:
    problem = random_problem(5, tasks=3, positions=3, variants=2, processors=3)
    policy = registry.create(name)
    specs = {
        t.name: Poisson(process="poisson", rate_hz=t.rate_hz) for t in problem.tasks
    }
    first = problem.tasks[0]
    change = SLOChangeEvent(5_000.0, first.name, latency_ms=first.latency_slo_ms * 1.5)
    res = simulate(
        problem,
        policy,
        make_arrivals(specs, 10.0, seed=1),
        warmup_s=1.0,
        slo_changes=[change],
    )
    assert res.requests > 0
    # Only a policy that drops late requests (Band's) may leave some unfinished, and those count as dropped.
    assert res.completed == res.requests or policy.drop_late
    assert res.dropped_rate == pytest.approx(1.0 - res.completed / res.requests)
    assert res.decisions >= res.requests and res.decision_us_p99 > 0
    # The change's re-plan, after the quick switch for a policy that has one (as the runtime records them).
    switches = retarget(registry.create(name), problem, change, policy.plan(problem)).switched is not None
    assert len(res.replan_ms) == 1 + switches
    assert res.peak_memory_mb <= problem.memory_budget_mb + 1e-6
    assert 0.0 <= res.slo_violation_rate <= 1.0
    assert all(0.0 <= u <= 1.0 for u in res.utilisation.values())


@pytest.mark.parametrize("name", registry.names())
def test_every_policy_handles_an_empty_workload(name: str) -> None:
    problem = random_problem(6, tasks=2, positions=2)
    specs = {
        t.name: Poisson(process="poisson", rate_hz=t.rate_hz) for t in problem.tasks
    }
    arrivals = make_arrivals(specs, 1.0, seed=0)
    empty = Arrivals(0, 1.0, {n: t[:0] for n, t in arrivals.times_ms.items()})
    res = simulate(problem, registry.create(name), empty)
    assert res.requests == 0 and res.block_executions == 0
