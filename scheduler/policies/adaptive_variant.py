"""AV baselines: adaptive choice among whole (un-stitched) variants (the SparseLoom paper's AV).

The same ILP (restricted to whole variants) plans, and per request the policy uses the same
dispatch machinery as SparseLoom's own policy (``scheduler.dispatch.dispatch``) over the Pareto
routes of whole variants, so the only difference from SparseLoom is stitching (and, for
``av-np``, that a request's blocks all run on one processor).

The dispatch rule is picked by the same measurement as SparseLoom's (``DISPATCH_DEFAULT``).
"""

from __future__ import annotations

from typing import Any

from scheduler.dispatch import check_rule, dispatch
from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import PlanSettings, dispatch_settings, ilp_plan, with_unit_latencies
from scheduler.policy import PolicyBase, QueueView
from scheduler.problem import Problem

# By the same measurement as SparseLoom's rule (benchmarks/dispatch_rules.py; the figures are in
# scheduler/policies/sparseloom.py): "place" (tied with "hold") has the lowest mean violation rate for
# av-np (2.10% against 10.77% "plan" and 10.76% "accuracy") and av-p (3.18 / 5.35 / 5.59%).
DISPATCH_DEFAULT = "place"


class AdaptiveVariantPolicy(PolicyBase):
    def __init__(self, name: str, partition: bool, dispatch: str = DISPATCH_DEFAULT, drop_late: bool = True,
                 admission: bool = True,
                 **options: Any) -> None:
        self.name = name
        self.partition = partition
        self.dispatch = check_rule(dispatch)
        self.drop_late = drop_late
        self.admission = admission
        self.settings, self.replan_settings = dispatch_settings(self.dispatch, **options)

    def plan(self, problem: Problem) -> Plan:
        return self._plan(problem, self.settings)

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        return self._plan(problem, self.replan_settings)

    def _plan(self, problem: Problem, settings: PlanSettings) -> Plan:
        restriction = Restriction(whole_variant=True, single_processor=not self.partition)
        return with_unit_latencies(ilp_plan(problem, self.name, settings, restriction), problem)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return dispatch(self.dispatch, task, plan, state, single_processor=not self.partition)
