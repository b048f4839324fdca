"""SV baselines (the SparseLoom paper's SV-AO / SV-LO, each NP or P): one whole (un-stitched)
variant per task, chosen once by a fixed rule and kept for the whole run.

- ``sv-ao-*``: the accuracy-optimal whole variant; the dense one when accuracy is unknown
  (a model without evaluation data: dense is the only variant known to lose nothing);
- ``sv-lo-*``: the latency-optimal whole variant among those meeting the accuracy SLO
  (the most accurate one when none does);
- ``*-np``: all blocks of a request on one processor; ``*-p``: blocks partitioned across processors.

The same ILP and solver settings as SparseLoom place the variant. Per request the same
placement machinery as SparseLoom's places its blocks ("place": as planned when the planned
processors are idle, else where they finish first; on one processor for NP). An SLO change
keeps the variant (``replan`` only updates the SLOs the dispatch checks against).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scheduler.dispatch import check_rule, dispatch
from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import ilp_plan, settings_from, with_unit_latencies
from scheduler.policy import PolicyBase, QueueView, with_slos
from scheduler.problem import Problem, TaskSpec
from scheduler.routes import pareto_routes


class SingleVariantPolicy(PolicyBase):
    def __init__(self, name: str, rule: str, partition: bool, dispatch: str = "place", drop_late: bool = True,
                 admission: bool = True,
                 **options: Any) -> None:
        if rule not in ("accuracy", "latency"):
            raise ValueError(f"rule must be 'accuracy' or 'latency', not {rule!r}")
        self.name = name
        self.rule = rule
        self.partition = partition
        self.dispatch = check_rule(dispatch)
        self.drop_late = drop_late
        self.admission = admission
        self.settings = replace(settings_from(**options), switching=False)

    def plan(self, problem: Problem) -> Plan:
        allowed = {t.name: self._variant_options(problem, t) for t in problem.tasks}
        restriction = Restriction(allowed=allowed, whole_variant=True, single_processor=not self.partition)
        return with_unit_latencies(ilp_plan(problem, self.name, self.settings, restriction), problem)

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        """A single variant is kept for the whole run: only the SLOs dispatch checks against change."""
        return with_slos(plan, problem)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return dispatch(self.dispatch, task, plan, state, single_processor=not self.partition)

    def _variant_options(self, problem: Problem, task: TaskSpec) -> tuple[tuple[int, ...], ...]:
        whole = whole_variants(task)
        if not whole:
            # No variant covers every position: fall back to any option (stitching is unavoidable).
            return tuple(tuple(range(len(pos))) for pos in task.positions)
        if self.rule == "accuracy":
            if task.base_accuracy is None and "dense" in whole:
                pick = "dense"  # accuracy unknown: only the dense variant is known to be the most accurate
            else:
                pick = max(whole, key=lambda v: (_accuracy(task, whole[v]), -self._best_ms(problem, task, whole[v])))
        else:
            ok = [v for v in whole if _meets(task, whole[v])]
            if ok:
                pick = min(ok, key=lambda v: (self._best_ms(problem, task, whole[v]), -_accuracy(task, whole[v])))
            else:
                pick = max(whole, key=lambda v: _accuracy(task, whole[v]))
        return tuple((o,) for o in whole[pick])

    def _best_ms(self, problem: Problem, task: TaskSpec, choice: tuple[int, ...]) -> float:
        """Fastest placement of a whole variant alone (what "latency-optimal" ranks by)."""
        allowed = frozenset(task.positions[p][o].digest for p, o in enumerate(choice))
        relaxed = replace(task, min_accuracy=-float("inf"))
        routes = pareto_routes(problem, relaxed, allowed, whole_variant=True, single_processor=not self.partition)
        return min((r.latency_ms for r in routes), default=float("inf"))


def _accuracy(task: TaskSpec, choice: tuple[int, ...]) -> float:
    """The variant's accuracy (measured where the task has it, else estimated); 0 when unknown."""
    acc = task.accuracy(choice)
    return 0.0 if acc is None else acc


def _meets(task: TaskSpec, choice: tuple[int, ...]) -> bool:
    acc = task.accuracy(choice)
    return acc is None or acc >= task.min_accuracy - 1e-9


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
