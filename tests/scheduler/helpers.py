"""Helpers for scheduler tests: a brute-force planner and a fixed queue view."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from scheduler.plan import Route
from scheduler.problem import Problem, TaskSpec
from scheduler.routes import DEFAULT_LOAD, LoadModel, check, digest_memory, evaluate, objective_value


def all_routes(problem: Problem, task: TaskSpec) -> list[Route]:
    names = {k.name for k in problem.processors}
    cells = [
        [(o, k) for o, opt in enumerate(pos) for k in opt.latency_ms if k in names]
        for pos in task.positions
    ]
    return [
        evaluate(problem, task, tuple(o for o, _ in combo), tuple(k for _, k in combo))
        for combo in itertools.product(*cells)
    ]


def all_feasible(
    problem: Problem, objective: str, allowed: Callable[[Route], bool] | None = None,
    load: LoadModel = DEFAULT_LOAD,
) -> Iterator[tuple[float, dict[str, Route]]]:
    """Every feasible plan (a route per task, only routes passing ``allowed`` when given) with its
    objective value, by enumeration of every stitched variant and placement of every task, with the
    modelled queueing waits in every latency."""
    per_task = []
    for t in problem.tasks:
        ok = [
            r
            for r in all_routes(problem, t)
            if (allowed is None or allowed(r))
            and r.latency_ms <= t.latency_slo_ms + 1e-9
            and (r.accuracy is None or r.accuracy >= t.min_accuracy - 1e-9)
        ]
        per_task.append(ok)
    mem = digest_memory(problem)
    for combo in itertools.product(*per_task):
        routes = {r.task: r for r in combo}
        f = check(problem, routes, load=load)
        if (
            f.latency
            or f.utilisation
            or sum(mem[d] for d in {d for r in combo for d in r.digests})
            > problem.memory_budget_mb + 1e-9
        ):
            continue
        yield objective_value(problem, routes, objective, load), routes


def brute_force(
    problem: Problem, objective: str, allowed: Callable[[Route], bool] | None = None,
    load: LoadModel = DEFAULT_LOAD,
) -> tuple[float, dict[str, Route]] | None:
    """The optimum by enumeration (:func:`all_feasible`)."""
    best: tuple[float, dict[str, Route]] | None = None
    for value, routes in all_feasible(problem, objective, allowed, load):
        if best is None or value < best[0] - 1e-12:
            best = (value, routes)
    return best


def combos(problem: Problem) -> int:
    return math.prod(len(all_routes(problem, t)) for t in problem.tasks)


@dataclass
class FixedQueues:
    """A QueueView with fixed backlogs and a resident set (None: everything resident)."""

    backlog: Mapping[str, float] = field(default_factory=dict)
    resident: frozenset[str] | None = None
    now_ms: float = 0.0
    memo: dict[str, object] = field(default_factory=dict)

    def backlog_ms(self, processor: str) -> float:
        return self.backlog.get(processor, 0.0)

    def is_resident(self, digest: str) -> bool:
        return self.resident is None or digest in self.resident
