"""Which extra blocks to load ahead of need, within a memory budget (pure functions).

Two rankings, selectable by name through PRELOADERS:
- ``hot`` (SparseLoom's hot-subgraph pre-loading): score = frequency x uniqueness, where
  frequency(d) = sum over tasks of request share x fraction of the task's candidate routes
  that use block d, and uniqueness(d) = 1 / number of distinct blocks that can fill the same
  position of that task among its candidates (a block with few substitutes is worth more).
- ``correlated`` (multi-task sparsity's correlation-aware pre-loading): score = probability
  that the next task switch goes to a task (from the task-transition counts, conditioned on
  the current task when given, else on the whole graph) summed over the tasks whose planned
  and candidate routes use block d, so the differential set of likely next tasks comes first.

Both return digests in load order, skipping blocks already resident, and never exceed the
budget (a block that does not fit is skipped, smaller later ones may still fit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from scheduler.plan import Route
from scheduler.problem import Problem
from scheduler.routes import digest_memory, request_shares

Preloader = Callable[
    [Problem, Mapping[str, Sequence[Route]], float, frozenset[str], "str | None"],
    tuple[str, ...],
]


def hot_blocks(
    problem: Problem,
    candidates: Mapping[str, Sequence[Route]],
    budget_mb: float,
    resident: frozenset[str] = frozenset(),
    current_task: str | None = None,
) -> tuple[str, ...]:
    """Blocks ranked by frequency x uniqueness over the tasks' candidate routes."""
    shares = request_shares(problem) if problem.tasks else {}
    score: dict[str, float] = {}
    for name, routes in candidates.items():
        if not routes:
            continue
        npos = len(routes[0].digests)
        fillers = [{r.digests[p] for r in routes} for p in range(npos)]
        share = shares.get(name, 0.0)
        for p in range(npos):
            count: dict[str, int] = {}
            for r in routes:
                count[r.digests[p]] = count.get(r.digests[p], 0) + 1
            for d, c in count.items():
                score[d] = score.get(d, 0.0) + share * (c / len(routes)) * (
                    1.0 / len(fillers[p])
                )
    return _fill(problem, score, budget_mb, resident)


def correlated_blocks(
    problem: Problem,
    candidates: Mapping[str, Sequence[Route]],
    budget_mb: float,
    resident: frozenset[str] = frozenset(),
    current_task: str | None = None,
) -> tuple[str, ...]:
    """Blocks of the tasks most likely to come next, from the task-transition graph."""
    prob = next_task_probability(problem, current_task)
    score: dict[str, float] = {}
    for name, routes in candidates.items():
        pt = prob.get(name, 0.0)
        if pt <= 0 or not routes:
            continue
        # The first candidate is the one the task would run first; its blocks weigh most.
        for rank, r in enumerate(routes):
            weight = pt / (1 + rank)
            for d in set(r.digests):
                score[d] = score.get(d, 0.0) + weight
    return _fill(problem, score, budget_mb, resident)


def next_task_probability(
    problem: Problem, current_task: str | None
) -> dict[str, float]:
    """P(next task) from transition counts: the current task's row, else in-flow over all rows.

    Falls back to request shares when there are no transition counts.
    """
    trans = problem.transitions
    if current_task is not None and sum(trans.get(current_task, {}).values()) > 0:
        row = trans[current_task]
        total = sum(row.values())
        return {dst: c / total for dst, c in row.items()}
    inflow: dict[str, float] = {}
    for row in trans.values():
        for dst, c in row.items():
            inflow[dst] = inflow.get(dst, 0.0) + c
    total = sum(inflow.values())
    if total > 0:
        return {dst: c / total for dst, c in inflow.items()}
    return request_shares(problem) if problem.tasks else {}


def _fill(
    problem: Problem,
    score: Mapping[str, float],
    budget_mb: float,
    resident: frozenset[str],
) -> tuple[str, ...]:
    mem = digest_memory(problem)
    order = sorted(
        (d for d in score if d not in resident and score[d] > 0),
        key=lambda d: (-score[d], mem[d], d),
    )
    chosen: list[str] = []
    left = budget_mb
    for d in order:
        if mem[d] <= left + 1e-9:
            chosen.append(d)
            left -= mem[d]
    return tuple(chosen)


PRELOADERS: Mapping[str, Preloader] = MappingProxyType(
    {"hot": hot_blocks, "correlated": correlated_blocks}
)


def preloader(name: str) -> Preloader:
    try:
        return PRELOADERS[name]
    except KeyError:
        raise ValueError(
            f"unknown preloader {name!r}; known: {', '.join(PRELOADERS)}"
        ) from None
