"""AV baselines: adaptive choice among whole (un-stitched) variants.

The same ILP (restricted to whole variants) plans, and per request the policy switches among
the Pareto routes of whole variants exactly as SparseLoom switches among stitched ones, so the
only difference from SparseLoom is stitching (and, for ``av-np``, partitioning).
"""

from __future__ import annotations

from typing import Any

from scheduler.dispatch import most_accurate_in_time
from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import ilp_plan, settings_from
from scheduler.policy import QueueView
from scheduler.problem import Problem


class AdaptiveVariantPolicy:
    def __init__(self, name: str, partition: bool, **options: Any) -> None:
        self.name = name
        self.partition = partition
        self.settings = settings_from(**options)

    def plan(self, problem: Problem) -> Plan:
        restriction = Restriction(
            whole_variant=True, single_processor=not self.partition
        )
        return ilp_plan(problem, self.name, self.settings, restriction)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return most_accurate_in_time(task, plan, state)
