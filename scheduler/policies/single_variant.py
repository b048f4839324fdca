"""SV baselines: one whole (un-stitched) variant per task, chosen by a fixed rule, placed by the
same ILP and solver settings as SparseLoom, served statically (no per-request switching).

- ``sv-ao-*``: the accuracy-optimal whole variant;
- ``sv-lo-*``: the latency-optimal whole variant among those meeting the accuracy SLO
  (the most accurate one when none does);
- ``*-np``: all blocks of a task on one processor; ``*-p``: blocks partitioned across processors.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import ilp_plan, settings_from
from scheduler.policy import QueueView
from scheduler.problem import Problem, TaskSpec
from scheduler.routes import pareto_routes


class SingleVariantPolicy:
    def __init__(self, name: str, rule: str, partition: bool, **options: Any) -> None:
        if rule not in ("accuracy", "latency"):
            raise ValueError(f"rule must be 'accuracy' or 'latency', not {rule!r}")
        self.name = name
        self.rule = rule
        self.partition = partition
        self.settings = replace(settings_from(**options), switching=False)

    def plan(self, problem: Problem) -> Plan:
        allowed = {t.name: self._variant_options(problem, t) for t in problem.tasks}
        restriction = Restriction(
            allowed=allowed, whole_variant=True, single_processor=not self.partition
        )
        return ilp_plan(problem, self.name, self.settings, restriction)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return plan.routes[task]

    def _variant_options(
        self, problem: Problem, task: TaskSpec
    ) -> tuple[tuple[int, ...], ...]:
        whole = whole_variants(task)
        if not whole:
            # No variant covers every position: fall back to any option (stitching is unavoidable).
            return tuple(tuple(range(len(pos))) for pos in task.positions)

        def accuracy(v: str) -> float:
            return sum(
                task.positions[p][o].accuracy_delta for p, o in enumerate(whole[v])
            )

        if self.rule == "accuracy":
            pick = max(
                whole,
                key=lambda v: (accuracy(v), -self._best_ms(problem, task, whole[v])),
            )
        else:
            ok = [v for v in whole if accuracy(v) >= task.min_score - 1e-9]
            if ok:
                pick = min(
                    ok,
                    key=lambda v: (
                        self._best_ms(problem, task, whole[v]),
                        -accuracy(v),
                    ),
                )
            else:
                pick = max(whole, key=accuracy)
        return tuple((o,) for o in whole[pick])

    def _best_ms(
        self, problem: Problem, task: TaskSpec, choice: tuple[int, ...]
    ) -> float:
        """Fastest placement of a whole variant alone (what "latency-optimal" ranks by)."""
        allowed = frozenset(task.positions[p][o].digest for p, o in enumerate(choice))
        relaxed = replace(task, min_accuracy=-float("inf"))
        routes = pareto_routes(
            problem,
            relaxed,
            allowed,
            whole_variant=True,
            single_processor=not self.partition,
        )
        return min((r.latency_ms for r in routes), default=float("inf"))


def whole_variants(task: TaskSpec) -> dict[str, tuple[int, ...]]:
    """Variants present at every position, with their option index per position."""
    out: dict[str, tuple[int, ...]] = {}
    if not task.positions:
        return out
    for v in {o.variant for o in task.positions[0]}:
        idx = []
        for pos in task.positions:
            found = [i for i, o in enumerate(pos) if o.variant == v]
            if not found:
                break
            idx.append(found[0])
        else:
            out[v] = tuple(idx)
    return dict(sorted(out.items()))
