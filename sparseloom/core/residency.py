"""What a plan loads when it comes in force: one rule for the simulator and the runtime.

A plan names the blocks to keep resident and those to pre-load when memory allows. Its resident set
is protected from eviction when it fits in the budget as a whole. A block loads compiled for a
processor, the first that one of the plan's routes or alternatives runs it on; a block that none
places is not loaded (the runtime would not know what to compile it for).
"""

from __future__ import annotations

from scheduler.plan import Plan, Route
from scheduler.problem import Problem


def route_digests(problem: Problem, route: Route) -> tuple[str, ...]:
    """The digest of each block of ``route`` (a route built without them reads them off the problem)."""
    if route.digests:
        return route.digests
    t = problem.task(route.task)
    return tuple(t.positions[p][o].digest for p, o in enumerate(route.options))


def placement(problem: Problem, plan: Plan) -> dict[str, str]:
    """The processor each block of ``plan`` is loaded for: the first route or alternative placing it."""
    where: dict[str, str] = {}
    for route in (*plan.routes.values(), *(r for a in plan.alternatives.values() for r in a)):
        for d, k in zip(route_digests(problem, route), route.processors):
            where.setdefault(d, k)
    return where


def plan_loads(problem: Problem, plan: Plan) -> list[tuple[str, str]]:
    """The (digest, processor) loads ``plan`` asks for, in order: its resident set (sorted by digest),
    then its preload list, each block placed by :func:`placement`; unplaced ones are skipped."""
    where = placement(problem, plan)
    return [(d, where[d]) for d in (*sorted(plan.resident), *plan.preload) if d in where]
