"""The closed loop in the simulator: the policy re-plans on observed latencies once they stray from
the profile by more than its threshold, and not before."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.policies.sparseloom import REPLAN_ERROR, SparseLoomPolicy
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec
from sparseloom.sim import engine

SLO_MS = 5.0


def _problem() -> Problem:
    # The profile says block "a" takes 2 ms and "b" 3 ms: the plan serves "t" with "a", whose truth is
    # slower. Task "u" has only "b" (the same block), so "b" is observed too.
    a, b = Block("a", "da", 1.0, {"cpu": 2.0}), Block("b", "db", 1.0, {"cpu": 3.0})
    t = TaskSpec("t", "m", SLO_MS, 0.0, 50.0, ((a, b),), (0.0,))
    u = TaskSpec("u", "m", 50.0, 0.0, 25.0, ((b,),), (0.0,))
    return Problem((t, u), (ProcessorInfo("cpu", "cpu"),), 100.0)


def _run(policy: SparseLoomPolicy, slow_a: float) -> engine.RawRun:
    problem = _problem()
    # "t" every 20 ms and "u" every 40 ms, apart, for 2 s: no request ever waits for another.
    t_times, u_times = np.arange(0.0, 2000.0, 20.0), np.arange(10.0, 2000.0, 40.0)
    times = np.concatenate([t_times, u_times])
    tasks = np.concatenate([np.zeros(t_times.size, dtype=int), np.ones(u_times.size, dtype=int)])
    order = np.argsort(times, kind="stable")
    return engine.run(problem, policy, policy.plan(problem), times[order], tasks[order],
                      duration_ms=2000.0, block_error=[slow_a, 1.0])


def _violations(raw: engine.RawRun) -> float:
    lat = np.asarray(raw.done_ms) - np.asarray(raw.arrival_ms)
    return float(np.mean(lat[np.asarray(raw.arrival_task) == 0] > SLO_MS))


def test_a_block_slower_than_its_profile_is_planned_away() -> None:
    closed = _run(SparseLoomPolicy(), 3.0)  # "a" really takes 6 ms, past the SLO
    open_loop = SparseLoomPolicy()
    open_loop.closed_loop = False
    opened = _run(open_loop, 3.0)
    assert _violations(opened) == 1.0
    # Re-planned once "a" had MIN_SAMPLES executions (at 380 ms; "b", not yet observed enough, taken
    # to be as slow), again once "b" had (the 20th "u" at 770 ms), then served by "b" (3 ms, in time).
    assert len(closed.replan_ns) == 2
    assert 0.3 < _violations(closed) < 0.5


@pytest.mark.parametrize(("factor", "replans"), [(1.0 + REPLAN_ERROR * 0.6, 0), (1.0 + REPLAN_ERROR * 1.5, 2)])
def test_errors_within_the_threshold_do_not_replan(factor: float, replans: int) -> None:
    # Above the threshold: once on "a" alone (and "b" taken to be as far off), once "b" is seen right.
    raw = _run(SparseLoomPolicy(), factor)
    assert len(raw.replan_ns) == replans


def test_a_short_blocks_factor_does_not_price_a_long_unobserved_block_out_of_service() -> None:
    # "df" (0.1 ms) really takes 3.5x its profile, as a short block's per-call cost makes it; the
    # long "dt" (12 ms) runs at its profile but is not observed MIN_SAMPLES times for 2 s. Priced at
    # df's 3.5x (42 ms, past text's 30 ms SLO), text would be shed at admission and never observed.
    df, dt = Block("f", "df", 1.0, {"cpu": 0.1}), Block("t", "dt", 1.0, {"cpu": 12.0})
    digits = TaskSpec("digits", "m", 10.0, 0.0, 200.0, ((df,),), (0.0,))
    text = TaskSpec("text", "n", 30.0, 0.0, 10.0, ((dt,),), (0.0,))
    problem = Problem((digits, text), (ProcessorInfo("cpu", "cpu"),), 100.0)
    d_times, t_times = np.arange(0.0, 3000.0, 5.0), np.arange(2.5, 3000.0, 100.0)
    times = np.concatenate([d_times, t_times])
    tasks = np.concatenate([np.zeros(d_times.size, dtype=int), np.ones(t_times.size, dtype=int)])
    order = np.argsort(times, kind="stable")
    policy = SparseLoomPolicy()
    raw = engine.run(problem, policy, policy.plan(problem), times[order], tasks[order],
                     duration_ms=3000.0, block_error=[3.5, 1.0])
    assert raw.replan_ns  # the loop did close on df
    lat = np.asarray(raw.done_ms) - np.asarray(raw.arrival_ms)
    served = lat[np.asarray(raw.arrival_task) == 1]
    assert served.size == t_times.size and bool(np.all(served <= 30.0)), served
