"""Lower bounds every policy is held to, whatever it plans: the fastest accurate variant of a task.

A comparison reads these to tell violations a policy causes from violations the SoC causes: a
request whose SLO is below its task's fastest accurate variant misses under every policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scheduler.problem import TaskSpec


def _pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, score) points no other point beats on both: faster and at least as accurate."""
    out: list[tuple[float, float]] = []
    for lat, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not out or score > out[-1][1]:
            out.append((lat, score))
    return out


def fastest_accurate_ms(task: TaskSpec) -> float | None:
    """A lower bound on the service time of any variant of ``task`` that meets its accuracy SLO:
    each block at its fastest processor, no transfers, no queueing. A variant counts as accurate
    when its estimate or its measurement meets the SLO, so the bound never exceeds what a policy
    judged on either can reach. None when no variant runs anywhere."""

    def block_ms(latency: Mapping[str, float]) -> float:
        return min(latency.values(), default=math.inf)

    # A Pareto front over positions keeps this exact without enumerating every stitched variant.
    front = [(0.0, 0.0)]
    for options in task.positions:
        step = [(block_ms(o.latency_ms), o.accuracy_delta) for o in options]
        front = _pareto([(a + la, b + sb) for a, b in front for la, sb in step if math.isfinite(la)])
    need = task.min_score
    best = min((lat for lat, score in front if score >= need - 1e-12), default=math.inf)
    for choice, accuracy in task.measured_accuracy.items():
        if accuracy >= task.min_accuracy:
            best = min(best, sum(block_ms(task.positions[p][i].latency_ms) for p, i in enumerate(choice)))
    return None if math.isinf(best) else best
