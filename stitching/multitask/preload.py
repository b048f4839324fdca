"""Correlation-aware pre-loading: learn which task follows which, pre-load the likely next blocks.

This is the one implementation of the task-transition graph and of the budgeted greedy fill;
the scheduler's pre-loaders (``scheduler.preload``) and the multi-task replay both use it.

:class:`TransitionGraph` counts switches A -> B (staying on a task is not a switch).
``next_probabilities(A)`` is the smoothed frequency ``(count(A, B) + alpha) / (sum_B count(A, B)
+ alpha * (n - 1))`` over the other tasks; when A has no row to go by (no counts and ``alpha`` 0,
or no current task) it is where switches go overall, the in-flow ``sum_A count(A, B)`` over
the other tasks, normalised.
:func:`fill_budget` picks blocks greedily by value (ties: smaller first) and never exceeds its
budget: a block that does not fit is skipped and smaller, less valuable ones may still fit.
:func:`preload_values` values each block by the probability that the next task needs it; the
pre-loaders that combine them are the scheduler's (``scheduler.preload``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise


class TransitionGraph:
    """Counts of task switches A -> B, learnt from observed sequences or given counts."""

    def __init__(self, tasks: Iterable[str], alpha: float = 0.5) -> None:
        self.tasks = sorted(set(tasks))
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self.counts: dict[tuple[str, str], float] = {}

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, Mapping[str, float]], tasks: Iterable[str] = (), alpha: float = 0.0
    ) -> TransitionGraph:
        """A graph from counts ``{A: {B: count}}`` (for example a workload's transition matrix)."""
        names = set(tasks) | set(counts) | {b for row in counts.values() for b in row}
        graph = cls(names, alpha)
        for a, row in counts.items():
            for b, c in row.items():
                graph.observe(a, b, float(c))
        return graph

    def observe(self, src: str, dst: str, count: float = 1.0) -> None:
        if src != dst and count > 0:
            self.counts[(src, dst)] = self.counts.get((src, dst), 0.0) + count
            for t in (src, dst):
                if t not in self.tasks:
                    self.tasks = sorted({*self.tasks, t})

    def observe_sequence(self, sequence: Sequence[str]) -> None:
        for a, b in pairwise(sequence):
            self.observe(a, b)

    def next_probabilities(self, src: str | None) -> dict[str, float]:
        """P(next task) given the current task ``src``; empty when there is nothing to go by."""
        if src is not None:
            others = [t for t in self.tasks if t != src]
            raw = {t: self.counts.get((src, t), 0.0) + self.alpha for t in others}
            total = sum(raw.values())
            if total > 0:
                return {t: v / total for t, v in raw.items()}
        inflow: dict[str, float] = {}
        for (_, dst), c in self.counts.items():
            if dst != src:
                inflow[dst] = inflow.get(dst, 0.0) + c
        total = sum(inflow.values())
        return {t: c / total for t, c in inflow.items()} if total > 0 else {}


@dataclass(frozen=True)
class PreloadPlan:
    """Blocks to load ahead of need, in load order; sizes and budget in the unit the caller gave."""

    order: tuple[str, ...]
    used: float
    budget: float
    expected_saved: float  # sum of value x size over the chosen blocks

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(self.order)


def preload_values(
    probabilities: Mapping[str, float], task_weights: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """Value of each block: sum over tasks of P(task) x the block's weight within that task."""
    value: dict[str, float] = {}
    for task, p in probabilities.items():
        if p <= 0.0:
            continue
        for d, w in task_weights.get(task, {}).items():
            value[d] = value.get(d, 0.0) + p * w
    return value


def fill_budget(
    value: Mapping[str, float], size: Mapping[str, float], budget: float, held: Iterable[str] = ()
) -> PreloadPlan:
    """Greedy knapsack by value (ties: smaller, then digest); skips held blocks and what does not fit."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    skip = frozenset(held)
    ranked = sorted((d for d in value if d not in skip and value[d] > 0), key=lambda d: (-value[d], size[d], d))
    chosen: list[str] = []
    used = 0.0
    saved = 0.0
    for d in ranked:
        if used + size[d] <= budget + 1e-9 * max(1.0, budget):
            chosen.append(d)
            used += size[d]
            saved += value[d] * size[d]
    return PreloadPlan(tuple(chosen), used, budget, saved)
