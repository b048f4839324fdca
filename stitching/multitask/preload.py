"""Correlation-aware pre-loading: learn which task follows which, pre-load the likely next tiles.

:class:`TransitionGraph` counts observed switches A -> B. ``next_probabilities(A)`` is the
smoothed frequency ``(count(A, B) + alpha) / (sum_B count(A, B) + alpha * (n - 1))`` over the other
tasks. :func:`plan_preload` picks, while task A runs, the tiles of likely next tasks that A does not
hold, greedily by expected bytes saved per byte (the probability that the next task needs the
tile), and never exceeds its memory budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise


class TransitionGraph:
    """Counts of task switches A -> B, learnt from observed sequences."""

    def __init__(self, tasks: Iterable[str], alpha: float = 0.5) -> None:
        self.tasks = sorted(set(tasks))
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self.counts: dict[tuple[str, str], int] = {}

    def observe(self, src: str, dst: str) -> None:
        if src != dst:
            self.counts[(src, dst)] = self.counts.get((src, dst), 0) + 1

    def observe_sequence(self, sequence: Sequence[str]) -> None:
        for a, b in pairwise(sequence):
            self.observe(a, b)

    def next_probabilities(self, src: str) -> dict[str, float]:
        others = [t for t in self.tasks if t != src]
        raw = {t: self.counts.get((src, t), 0) + self.alpha for t in others}
        total = sum(raw.values())
        if total == 0:
            return {t: 0.0 for t in others}
        return {t: v / total for t, v in raw.items()}


@dataclass(frozen=True)
class PreloadPlan:
    """Digests to hold beyond the running task's own, their bytes, and the budget they fit."""

    digests: frozenset[str]
    nbytes: int
    budget_bytes: int
    expected_saved_bytes: float


def plan_preload(
    current: str,
    probabilities: Mapping[str, float],
    task_digests: Mapping[str, Iterable[str]],
    nbytes: Mapping[str, int],
    budget_bytes: int,
) -> PreloadPlan:
    """Greedy knapsack by P(next task needs the tile); skips what does not fit, never exceeds the budget."""
    if budget_bytes < 0:
        raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
    held = frozenset(task_digests[current])
    value: dict[str, float] = {}
    for task, p in probabilities.items():
        if task == current or p <= 0.0:
            continue
        for d in task_digests[task]:
            if d not in held:
                value[d] = value.get(d, 0.0) + p
    chosen: set[str] = set()
    used = 0
    saved = 0.0
    for d in sorted(value, key=lambda d: (-value[d], d)):
        size = nbytes[d]
        if used + size <= budget_bytes:
            chosen.add(d)
            used += size
            saved += value[d] * size
    return PreloadPlan(frozenset(chosen), used, budget_bytes, saved)
