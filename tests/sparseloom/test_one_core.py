"""One seeded scenario through both drivers of the decision core: the simulator (simulated clock) and
the runtime (wall clock, real blocks on the host) decide the same route per request, and load and
evict the same blocks in the same order.

Requests come one at a time (30 ms apart; a block runs in well under a millisecond here), so every
decision sees idle processors in both drivers and the comparison does not depend on the host's speed.
The policies run open loop: the runtime's measured latencies are not the profile's, and a closed
loop would rightly re-plan on them.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from scheduler import registry
from scheduler.plan import Plan
from scheduler.policy import Policy
from scheduler.problem import Problem
from sparseloom.core.decisions import Decisions
from sparseloom.core.slo import SLOChangeEvent, retarget
from sparseloom.runtime import Runtime
from sparseloom.runtime.replay import replay
from sparseloom.sim import engine
from sparseloom.sim.runner import Arrivals
from stitching.pool import Pool
from tests.sparseloom.runtime_helpers import FixedRoutes, digits_problem, host_soc

pytestmark = pytest.mark.wallclock  # drives the real runtime on the wall clock: run alone, not beside other tests

GAP_MS = 30.0
# How long a re-plan takes in both drivers (modelled in the simulator, slept in the runtime): long
# enough that a request dispatched 1 ms after an SLO change has finished, on a loaded host too,
# before the re-plan lands and loads its blocks (a block still needed would not be evicted for them).
REPLAN_MS = 200.0
# Long enough after a change for that re-plan to have landed in both drivers.
QUIET_MS = 1500.0


def both(problem: Problem, make: Callable[[], Policy], times: dict[str, np.ndarray], changes: Sequence[SLOChangeEvent],
         pool: Pool, cache: Path) -> tuple[Decisions, Decisions]:
    """The decisions of the simulator and of the runtime on the same plan, arrivals and SLO changes."""
    end = max(float(t[-1]) for t in times.values())
    arrivals = Arrivals(0, end / 1000.0 + 0.05, times)
    plan = make().plan(problem)
    simulated = Decisions()
    at, ak = arrivals.merged([t.name for t in problem.tasks])
    engine.run(problem, make(), plan, at, ak, duration_ms=arrivals.duration_s * 1000.0, slo_changes=changes,
               replan_delay_ms=lambda _: REPLAN_MS, decisions=simulated)
    x = torch.from_numpy((load_digits().images[:1] / 16.0).astype(np.float32))[:, None]
    ran = Decisions()
    policy = make()
    replan = policy.replan

    def slow_replan(problem: Problem, plan: Plan) -> Plan:
        time.sleep(REPLAN_MS / 1000.0)
        return replan(problem, plan)

    policy.replan = slow_replan  # type: ignore[method-assign]
    with Runtime(problem, policy, host_soc(), pool, cache_dir=cache, plan=plan, decisions=ran) as rt:
        replay(rt, arrivals, lambda task: (x,), slo_changes=changes)
        rt.wait_replans()
        assert rt.stats().errors == 0
    return simulated, ran


def open_loop(name: str) -> Callable[[], Policy]:
    def make() -> Policy:
        policy = registry.create(name)
        policy.closed_loop = False
        return policy
    return make


def test_both_drivers_decide_alike_through_an_slo_change_that_switches_and_evicts(pool: Pool, dirs: Path) -> None:
    full = digits_problem(pool, tasks=("a", "b"))
    dense = sum(o.memory_mb for opts in full.tasks[0].positions for o in opts if o.variant == "dense")
    pruned = [o.memory_mb for opts in full.tasks[0].positions for o in opts if o.variant != "dense"]
    # Room for the dense blocks, not for the dense and the pruned ones together: raising a task's
    # accuracy bound to the dense variant's must evict the pruned blocks.
    budget = dense + 0.5 * min(pruned)
    problem = dataclasses.replace(full, memory_budget_mb=budget)
    make = open_loop("sparseloom")
    before = np.arange(20) * GAP_MS + 5.0
    change = SLOChangeEvent(float(before[-1]) + GAP_MS, "a", min_accuracy=0.975)
    # One request 1 ms after the change, before any re-plan has landed (modelled or real): it takes
    # the switched plan's route. The rest come once the re-plans have.
    after = change.at_ms + 1.0 + QUIET_MS + np.arange(20) * GAP_MS
    times = {"a": np.concatenate([before[0::2], after[0::2]]),
             "b": np.concatenate([before[1::2], [change.at_ms + 1.0], after[1::2]])}
    plan = make().plan(problem)
    switched = retarget(make(), problem, change, plan).switched
    assert switched is not None and switched.routes["b"].processors != plan.routes["b"].processors

    simulated, ran = both(problem, make, times, [change], pool, dirs / "cc")

    assert len(simulated.routes) == 41
    assert ran.routes == simulated.routes
    at_switch = simulated.routes[20]
    assert at_switch is not None and at_switch[2] == switched.routes["b"].processors
    # The dense variant after the change, where the pruned one served before it.
    assert {r[1] for r in simulated.routes[:20] if r} != {r[1] for r in simulated.routes[21:] if r}
    assert simulated.evictions and ran.evictions == simulated.evictions
    assert ran.loads == simulated.loads


def test_both_drivers_load_and_evict_alike_when_routes_cycle_through_a_tight_budget(pool: Pool, dirs: Path) -> None:
    full = digits_problem(pool)
    sizes = sorted({o.memory_mb for opts in full.tasks[0].positions for o in opts})
    # Room for one route's two largest blocks, not for all four: every route change evicts.
    problem = dataclasses.replace(full, memory_budget_mb=sizes[-1] + sizes[-2] + 1e-6)
    routes = [((a, b), ("cpu0", "cpu1")) for a, b in itertools.product((0, 1), repeat=2)]

    simulated, ran = both(problem, lambda: FixedRoutes(problem, routes), {"digits": np.arange(16) * GAP_MS + 5.0}, (),
                          pool, dirs / "cc")

    assert len(simulated.evictions) >= 16 and len(simulated.loads) >= 16
    assert ran.routes == simulated.routes
    assert ran.loads == simulated.loads
    assert ran.evictions == simulated.evictions


@pytest.mark.parametrize("name", ["band-heft", "band-lsf"])
def test_both_drivers_run_bands_global_queue_alike(name: str, pool: Pool, dirs: Path) -> None:
    full = digits_problem(pool, variants=("dense",))
    # Block 0 is fastest on cpu0, block 1 on cpu1 (modelled: the policies plan on these), so Band's
    # schedulers move a request between processors.
    fast = ({"cpu0": 0.2, "cpu1": 0.6}, {"cpu0": 0.6, "cpu1": 0.2})
    task = full.tasks[0]
    positions = tuple(tuple(dataclasses.replace(o, latency_ms=dict(fast[p])) for o in opts)
                      for p, opts in enumerate(task.positions))
    problem = dataclasses.replace(full, tasks=(dataclasses.replace(task, positions=positions),))

    simulated, ran = both(problem, lambda: registry.create(name), {"digits": np.arange(12) * GAP_MS + 5.0}, (),
                          pool, dirs / "cc")

    assert len(simulated.assignments) >= 12 and {a[2] for a in simulated.assignments} == {"cpu0", "cpu1"}
    assert ran.assignments == simulated.assignments
    assert ran.routes == simulated.routes and ran.loads == simulated.loads
