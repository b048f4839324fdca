"""The decision core's rules that the simulator and the runtime both go by: what a plan expects of a
request, what a plan loads, when the closed loop is shown feedback, and how variant switches count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from scheduler.feedback import FEEDBACK_EVERY_MS
from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policy import QueueView
from scheduler.problem import Problem
from sparseloom.core.expected import expected, placed_ms
from sparseloom.core.metrics import VariantSwitches
from sparseloom.core.residency import plan_loads
from sparseloom.core.slo import Replans
from sparseloom.sim import Arrivals, simulate
from tests.sparseloom.simdoubles import FixedPolicy, chain_task, problem_of


def _two_procs() -> Problem:
    # 2 blocks, output 4 MB: a move between processors costs 0.5 + 4 / 2 = 2.5 ms.
    task = chain_task("a", [{"cpu": 10.0, "gpu": 5.0}, {"cpu": 6.0, "gpu": 3.0}], output_mb=4.0, slo_ms=100.0)
    return problem_of([task], ("cpu", "gpu"), memory_budget_mb=100, transfer_latency_ms=0.5, transfer_mb_per_ms=2.0)


def test_a_bare_route_is_expected_to_take_its_profile_and_the_move_between_processors() -> None:
    problem = _two_procs()
    exp = expected(problem, Route("a", (0, 0), ("gpu", "cpu"), 0.0, None, 0.0))
    assert exp.block_ms == (5.0, 6.0)
    assert exp.transfer_ms == (0.0, 2.5)
    assert exp.left_ms == (13.5, 6.0)


def test_a_route_carrying_its_own_latencies_is_expected_to_take_those() -> None:
    # A closed-loop re-plan's route: the blocks corrected (x2), the transfer after block 0 as ever.
    problem = _two_procs()
    exp = expected(problem, Route("a", (0, 0), ("gpu", "cpu"), 24.5, None, 0.0, step_latency_ms=(12.5, 12.0)))
    assert exp.block_ms == pytest.approx((10.0, 12.0))
    assert exp.left_ms == pytest.approx((24.5, 12.0))


def test_a_placed_block_pays_the_move_only_from_another_processor() -> None:
    problem = _two_procs()
    task = problem.tasks[0]
    assert placed_ms(problem, task, 1, 0, "gpu", "cpu") == 8.5
    assert placed_ms(problem, task, 1, 0, "cpu", "cpu") == 6.0
    assert placed_ms(problem, task, 0, 0, None, "gpu") == 5.0


class _Believes(FixedPolicy):
    """A fixed route that says its block takes ``believed_ms`` (as a corrected re-plan's route does)."""

    believed_ms: float = 10.0

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        r = plan.routes[task]
        return replace(r, step_latency_ms=(self.believed_ms,), latency_ms=self.believed_ms)


@pytest.mark.parametrize(("believed_ms", "dropped"), [(10.0, False), (30.0, True)])
def test_the_simulator_drops_a_late_request_by_what_the_plan_expects(believed_ms: float, dropped: bool) -> None:
    # The block takes 10 ms (the profile and the truth), the SLO is 20 ms. A route that expects 30 ms
    # is hopeless by the plan's figures, so the late check drops it before it runs; 10 ms passes.
    problem = problem_of([chain_task("a", [{"cpu": 10.0}], slo_ms=20.0)], memory_budget_mb=10)
    policy = _Believes("fixed", {"a": ((0,), ("cpu",))})
    policy.believed_ms = believed_ms
    policy.drop_late = True
    res = simulate(problem, policy, Arrivals(0, 1.0, {"a": np.asarray([0.0])}))
    assert res.per_task["a"].completed == (0 if dropped else 1)


def test_a_plan_loads_its_resident_set_then_its_preloads_each_for_the_processor_that_runs_it() -> None:
    problem = _two_procs()
    t = problem.tasks[0]
    b0, b1 = (pos[0].digest for pos in t.positions)
    route = Route("a", (0, 0), ("gpu", "cpu"), 0.0, None, 0.0)
    plan = Plan({"a": route}, SolveInfo("x", "ok", 0.0), resident=frozenset({b1, "elsewhere"}), preload=(b0,))
    assert plan_loads(problem, plan) == [(b1, "cpu"), (b0, "gpu")]


def test_the_simulator_does_not_load_a_resident_block_no_route_runs() -> None:
    # Task b's block is in the resident set, but the plan routes only task a: nothing places b's block
    # on a processor, so neither driver loads it.
    a, b = chain_task("a", [{"cpu": 1.0}]), chain_task("b", [{"cpu": 1.0}])
    problem = problem_of([a, b], memory_budget_mb=10)
    b_digest = b.positions[0][0].digest
    policy = FixedPolicy("fixed", {"a": ((0,), ("cpu",)), "b": ((0,), ("cpu",))}, resident=frozenset({b_digest}))
    plan = policy.plan(problem)
    only_a = replace(plan, routes={"a": plan.routes["a"]})
    res = simulate(problem, policy, Arrivals(0, 1.0, {"a": np.asarray([]), "b": np.asarray([])}), plan=only_a)
    assert res.loads == 0
    res = simulate(problem, policy, Arrivals(0, 1.0, {"a": np.asarray([]), "b": np.asarray([])}), plan=plan)
    assert res.loads == 1


def test_the_closed_loop_is_shown_feedback_at_most_every_period_and_never_while_a_replan_is_in_flight() -> None:
    r = Replans()
    assert not r.feedback_due(FEEDBACK_EVERY_MS - 1)
    assert r.feedback_due(FEEDBACK_EVERY_MS + 5)
    assert not r.feedback_due(2 * FEEDBACK_EVERY_MS)  # the next is FEEDBACK_EVERY_MS after the last
    r.in_flight += 1
    assert not r.feedback_due(3 * FEEDBACK_EVERY_MS)
    r.in_flight -= 1
    assert r.feedback_due(3 * FEEDBACK_EVERY_MS)


def test_variant_switches_count_changes_between_admitted_requests_arriving_in_the_window() -> None:
    v = VariantSwitches(2)
    for t, opts in ((1.0, (0,)), (2.0, (1,)), (3.0, (1,)), (12.0, (0,))):
        v.see(0, opts, t)
    v.see(1, (0,), 5.0)  # a task's first variant is no switch
    assert v.at_ms == [[2.0, 12.0], []]
