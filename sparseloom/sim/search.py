"""Searches over one experiment: the highest load, and the least memory, at a target violation rate.

Both are one geometric bisection (:func:`boundary`) over a monotone pass/fail trial: the load
search passes low scales and fails high ones, the memory search passes large budgets and fails
small ones. Each trial plans the changed problem once and simulates it on every seed of the
experiment (:func:`mean_violation`), with the experiment's SLO changes, latency spread and profile
error, as the comparison beside it does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from scheduler.policy import Policy
from scheduler.problem import Problem
from sparseloom.sim.engine import BlockOverBudget
from sparseloom.sim.experiment import Experiment
from sparseloom.sim.runner import arrivals_in, scale_rates, simulate_in
from sparseloom.workload import Arrival


@dataclass(frozen=True)
class Boundary:
    """Where a monotone trial turns from passing to failing, to within the search's tolerance."""

    passing: float | None  # the passing point nearest the turn; None when no point tried passed
    bounded: bool  # False when the search reached a limit without finding both sides


def boundary(passes: Callable[[float], bool], start: float, *, worse: float, lowest: float, highest: float,
             tolerance: float) -> Boundary:
    """Step from ``start`` by the factor ``worse`` (> 1: larger values fail; < 1: smaller ones do)
    while the trial passes, or the other way while it fails, until both sides are found within
    [``lowest``, ``highest``]; then bisect geometrically until the two sides are within
    ``tolerance`` (relative). Every point tried lies within the limits."""
    if not 0 < lowest <= start <= highest or worse <= 0 or worse == 1.0 or tolerance <= 0:
        raise ValueError(f"boundary needs 0 < lowest <= start <= highest, worse > 0 and != 1, tolerance > 0; got "
                         f"{lowest:g} <= {start:g} <= {highest:g}, worse {worse:g}, tolerance {tolerance:g}")

    def inside(x: float) -> bool:
        return lowest * (1 - 1e-12) <= x <= highest * (1 + 1e-12)

    good, bad = (start, None) if passes(start) else (None, start)
    step = worse if good is not None else 1.0 / worse
    x = start
    while good is None or bad is None:
        x *= step
        if not inside(x):
            return Boundary(good, False)
        if passes(x):
            good = x
        else:
            bad = x
    while max(good, bad) / min(good, bad) - 1.0 > tolerance:
        mid = math.sqrt(good * bad)
        if passes(mid):
            good = mid
        else:
            bad = mid
    return Boundary(good, True)


def mean_violation(problem: Problem, policy: Policy, specs: Mapping[str, Arrival], experiment: Experiment,
                   rate_scale: float = 1.0) -> tuple[float, float]:
    """Plan ``problem`` once, simulate it on each seed of ``experiment`` (arrivals at its rate scale x
    ``rate_scale``); the mean violation rate and offered load (rps)."""
    plan = policy.plan(problem)
    viol, offered = [], []
    for s in experiment.seed_list:
        res = simulate_in(experiment, problem, policy, arrivals_in(experiment, specs, s, rate_scale), plan=plan)
        viol.append(res.slo_violation_rate)
        offered.append(res.offered_rps)
    return float(np.mean(viol)), float(np.mean(offered))


@dataclass(frozen=True)
class SustainableRate:
    """The largest load a policy sustains at or below the target violation rate."""

    policy: str
    target: float
    rate_scale: float  # relative to the experiment's; 0 when none tried passed
    offered_rps: float
    slo_violation_rate: float
    # (rate_scale, offered_rps, violation rate) of every point tried, in the order tried.
    points: tuple[tuple[float, float, float], ...]
    bounded: bool  # False when the search hit its scale limit without crossing the target


def max_sustainable_rate(
    problem: Problem,
    policy: Policy,
    specs: Mapping[str, Arrival],
    experiment: Experiment,
    *,
    target: float = 0.05,
    tolerance: float = 0.02,
    max_scale: float = 64.0,
    progress: bool = True,
) -> SustainableRate:
    """Bisect a load scale factor for the highest offered rate with violation rate <= ``target``.

    The policy re-plans at every load point with the scaled expected rates. The search doubles
    (or halves) from scale 1 until it brackets the target, between 1/``max_scale`` and
    ``max_scale``, then bisects until the bracket is within ``tolerance`` (relative).
    """
    points: dict[float, tuple[float, float]] = {}
    bar = tqdm(desc=f"max rate {policy.name}", unit="point", disable=not progress, leave=False)

    def passes(scale: float) -> bool:
        v, o = mean_violation(scale_rates(problem, experiment.rate_scale * scale), policy, specs, experiment, scale)
        points[scale] = (o, v)
        bar.set_postfix_str(f"x{scale:.3g}: {v:.1%} violations")
        bar.update()
        return v <= target

    try:
        found = boundary(passes, 1.0, worse=2.0, lowest=1.0 / max_scale, highest=max_scale, tolerance=tolerance)
    finally:
        bar.close()
    tried = tuple((x, o, v) for x, (o, v) in points.items())
    if found.passing is None:
        return SustainableRate(policy.name, target, 0.0, 0.0, tried[-1][2], tried, found.bounded)
    o, v = points[found.passing]
    return SustainableRate(policy.name, target, found.passing, o, v, tried, found.bounded)


@dataclass(frozen=True)
class MinimalBudget:
    """The smallest memory budget at which a policy stays at or below the target violation rate."""

    policy: str
    target: float
    # None when even the largest budget tried misses the target.
    memory_budget_mb: float | None
    slo_violation_rate: float
    # (memory budget MB, violation rate) of every point tried, in the order tried.
    points: tuple[tuple[float, float], ...]
    # False when the search reached a limit: the top budget missed, or 1/1024 of it still passed.
    bounded: bool = True


# The memory search goes down to this fraction of its top budget: blocks are at least kilobytes
# and budgets at most gigabytes, so a policy passing at 1/1024 of its top needs next to no memory.
MEMORY_FLOOR = 1.0 / 1024.0


def min_memory_budget(
    problem: Problem,
    policy: Policy,
    specs: Mapping[str, Arrival],
    experiment: Experiment,
    *,
    target: float = 0.05,
    tolerance: float = 0.05,
    max_budget_mb: float | None = None,
    progress: bool = True,
) -> MinimalBudget:
    """Bisect the memory budget for the least memory with violation rate <= ``target``.

    This is "memory at equal violation rate": the policy plans for each budget and the simulator
    enforces it (blocks evicted and reloaded at storage bandwidth). The search starts at
    ``max_budget_mb`` (default the problem's budget), halves until the target is missed, then
    bisects until the bracket is within ``tolerance`` (relative).
    """
    top = problem.memory_budget_mb if max_budget_mb is None else max_budget_mb
    if not math.isfinite(top) or top <= 0:
        raise ValueError(f"the memory budget search needs a finite positive budget, got {top:g} MB")
    points: dict[float, float] = {}
    bar = tqdm(desc=f"min memory {policy.name}", unit="point", disable=not progress, leave=False)

    def passes(budget_mb: float) -> bool:
        try:
            v, _ = mean_violation(replace(problem, memory_budget_mb=budget_mb), policy, specs, experiment)
        except BlockOverBudget:
            v = 1.0  # the policy's plan needs a block larger than this budget: no request can run
        points[budget_mb] = v
        bar.set_postfix_str(f"{budget_mb:.4g} MB: {v:.1%} violations")
        bar.update()
        return v <= target

    try:
        found = boundary(passes, top, worse=0.5, lowest=top * MEMORY_FLOOR, highest=top, tolerance=tolerance)
    finally:
        bar.close()
    tried = tuple(points.items())
    if found.passing is None:
        return MinimalBudget(policy.name, target, None, tried[-1][1], tried, found.bounded)
    return MinimalBudget(policy.name, target, found.passing, points[found.passing], tried, found.bounded)
