"""Band baselines: per-block placement of unit sub-graphs at request time.

Band (MobiSys'22) does not choose variants, so the whole variant per task comes from the same
ILP as AV (whole variants, partitioning allowed, same solver settings). At request time:
- ``band-lsf``: Band's least-slack-first planner assigns each request the unit sub-graph
  placement with the shortest expected latency given the workers' waiting times (exact DP);
- ``band-heft``: Band's HEFT planner places unit sub-graphs one by one on the processor with
  the earliest finish time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scheduler.dispatch import place_blocks
from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import ilp_plan, settings_from, with_unit_latencies
from scheduler.policy import QueueView
from scheduler.problem import Problem


class BandPolicy:
    def __init__(self, name: str, exhaustive: bool, **options: Any) -> None:
        self.name = name
        self.exhaustive = exhaustive
        self.settings = replace(settings_from(**options), switching=False)

    def plan(self, problem: Problem) -> Plan:
        base = ilp_plan(
            problem, self.name, self.settings, Restriction(whole_variant=True)
        )
        return with_unit_latencies(base, problem)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return place_blocks(task, plan, state, self.exhaustive)
