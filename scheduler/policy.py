"""The one small interface every policy implements, SparseLoom's own and each baseline.

The simulator and the runtime hold a :class:`Policy` and never branch on its name.
"""

from __future__ import annotations

from typing import Protocol

from scheduler.plan import Plan, Route
from scheduler.problem import Problem


class QueueView(Protocol):
    """Live state a policy may read when it dispatches a request."""

    @property
    def now_ms(self) -> float: ...

    def backlog_ms(self, processor: str) -> float:
        """Time until ``processor`` would start a newly queued block."""
        ...

    def is_resident(self, digest: str) -> bool: ...


class Policy(Protocol):
    """Plans offline, decides online."""

    name: str

    def plan(self, problem: Problem) -> Plan:
        """Choose a route per task (and residency) for the whole problem."""
        ...

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        """Pick the route for one arriving request; must be fast (target p99 <= 100 us)."""
        ...
