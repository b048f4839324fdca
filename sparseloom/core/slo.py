"""SLO changes: what the simulator and the runtime do when a task's latency or accuracy bound changes.

Both follow one sequence (:func:`retarget`): the task's bounds change for requests arriving from
then on; the policy's quick ``switch`` (if it has one) serves at once; its full ``replan``, made on
the plan then in force, serves once it is ready. The simulator charges that re-plan its modelled
solve time, the runtime its wall time off the hot path. A re-plan made for SLOs that have changed
again meanwhile is not installed (:class:`Replans`): the newer change's re-plan supersedes it.

A closed-loop policy is shown what was observed (:meth:`Replans.feedback_due`) at the first arrival
FEEDBACK_EVERY_MS after it was last shown, unless a re-plan is still to serve: that plan may already
answer what it would see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from scheduler.feedback import FEEDBACK_EVERY_MS
from scheduler.plan import Plan
from scheduler.policy import Policy
from scheduler.problem import Problem, TaskSpec


@dataclass(frozen=True)
class SLOChangeEvent:
    """An SLO change of one task at ``at_ms``; ``None`` leaves that bound as it is."""

    at_ms: float
    task: str
    latency_ms: float | None = None
    min_accuracy: float | None = None

    def apply(self, task: TaskSpec) -> TaskSpec:
        """``task`` with this change's bounds in force."""
        return replace(
            task,
            latency_slo_ms=task.latency_slo_ms if self.latency_ms is None else float(self.latency_ms),
            min_accuracy=task.min_accuracy if self.min_accuracy is None else float(self.min_accuracy),
        )


@dataclass(frozen=True)
class Retarget:
    """The outcome of one SLO change, before the re-plan: the problem now in force, and the policy's
    quick switch (None: it has none, and the old plan serves until the re-plan)."""

    problem: Problem
    switched: Plan | None
    switch_ns: int  # wall time of the switch (measured); 0 without one


def retarget(policy: Policy, problem: Problem, change: SLOChangeEvent, plan: Plan) -> Retarget:
    """Apply ``change`` to ``problem`` and ask ``policy`` for its quick switch away from ``plan``."""
    tasks = list(problem.tasks)
    for k, t in enumerate(tasks):
        if t.name == change.task:
            tasks[k] = change.apply(t)
            break
    else:
        raise ValueError(f"SLO change for unknown task '{change.task}'")
    changed = replace(problem, tasks=tuple(tasks))
    t0 = time.perf_counter_ns()
    switched = policy.switch(plan, changed)
    return Retarget(changed, switched, time.perf_counter_ns() - t0 if switched is not None else 0)


class Replans:
    """Which re-plan may still serve: each SLO change starts a generation, and only a plan made in the
    newest generation is installed (one made for SLOs changed since would undo the newer change).
    Also how many re-plans (for SLO changes or the closed loop) are made but not yet served or
    discarded, and when the closed loop is next due."""

    __slots__ = ("generation", "in_flight", "next_feedback_ms")

    def __init__(self) -> None:
        self.generation = 0
        self.in_flight = 0
        self.next_feedback_ms = FEEDBACK_EVERY_MS

    def start(self) -> int:
        """A change happened: the generation a re-plan made for it belongs to."""
        self.generation += 1
        return self.generation

    def current(self, generation: int) -> bool:
        """Whether a plan made in ``generation`` is still for the SLOs in force."""
        return generation == self.generation

    def feedback_due(self, now_ms: float) -> bool:
        """Whether a closed-loop policy is to be shown what was observed now (an arrival at ``now_ms``);
        when it is, the next showing is FEEDBACK_EVERY_MS later."""
        if now_ms < self.next_feedback_ms or self.in_flight:
            return False
        self.next_feedback_ms = now_ms + FEEDBACK_EVERY_MS
        return True
