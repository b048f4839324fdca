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

``plan_preload`` is the correlation-aware pre-loader for tasks whose block sets are given
outright (the multi-task heads of ``sparseloom switch`` and its simulation): each block is
valued by the probability that the next task needs it.

All return digests in load order, skipping blocks already resident, and never exceed the
budget (a block that does not fit is skipped, smaller later ones may still fit). The transition
graph and the budgeted greedy fill are ``stitching.multitask.preload``'s, shared with the
multi-task switch replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from scheduler.plan import Route
from scheduler.problem import Problem
from scheduler.routes import digest_memory, request_shares
from stitching.multitask.preload import PreloadPlan, TransitionGraph, fill_budget, preload_values

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
    weights: dict[str, dict[str, float]] = {}
    for name, routes in candidates.items():
        w = weights[name] = {}
        # The first candidate is the one the task would run first; its blocks weigh most.
        for rank, r in enumerate(routes):
            for d in set(r.digests):
                w[d] = w.get(d, 0.0) + 1.0 / (1 + rank)
    return _fill(problem, preload_values(prob, weights), budget_mb, resident)


def next_task_probability(
    problem: Problem, current_task: str | None
) -> dict[str, float]:
    """P(next task) from the transition graph of ``problem.transitions`` (the current task's
    row, else the in-flow over all rows); falls back to request shares when there are no counts."""
    graph = TransitionGraph.from_counts(problem.transitions, (t.name for t in problem.tasks))
    prob = graph.next_probabilities(current_task)
    if prob:
        return prob
    return request_shares(problem) if problem.tasks else {}


def _fill(
    problem: Problem,
    score: Mapping[str, float],
    budget_mb: float,
    resident: frozenset[str],
) -> tuple[str, ...]:
    return fill_budget(score, digest_memory(problem), budget_mb, resident).order


def plan_preload(
    current: str,
    probabilities: Mapping[str, float],
    task_digests: Mapping[str, Iterable[str]],
    nbytes: Mapping[str, int],
    budget_bytes: int,
) -> PreloadPlan:
    """While ``current`` runs: the blocks of likely next tasks that it does not hold, within the budget."""
    if budget_bytes < 0:
        raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
    weights = {t: dict.fromkeys(ds, 1.0) for t, ds in task_digests.items() if t != current}
    value = preload_values({t: p for t, p in probabilities.items() if t != current}, weights)
    return fill_budget(value, nbytes, budget_bytes, task_digests[current])


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
