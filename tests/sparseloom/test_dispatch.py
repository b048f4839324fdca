"""The core's dispatch rules (sparseloom.core.dispatch): prefetch order, late drops, the global queue."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policy import Assignment, Job, PolicyBase, QueueView
from sparseloom.core.dispatch import assign, late, prefetch


def test_prefetch_starts_missing_blocks_in_route_order_until_one_does_not_fit() -> None:
    started: list[str] = []
    room = {"a": True, "c": False, "d": True}
    prefetch(["a", "b", "c", "d"], lambda k: k != "b", lambda k: room[k] and (started.append(k) or True))
    assert started == ["a"]  # b is resident; c does not fit, so d (after it) loads on demand


def test_late_is_past_the_deadline_even_if_the_rest_ran_at_once() -> None:
    assert late(10.0, 5.0, 14.0) and not late(10.0, 4.0, 14.0)


class Scripted(PolicyBase):
    """A global-queue policy that answers every schedule call with the same assignments."""

    name = "scripted"
    queue = "global"

    def __init__(self, answer: list[Assignment], drop_late: bool = False) -> None:
        self.answer = answer
        self.drop_late = drop_late

    def plan(self, problem: object) -> Plan:  # type: ignore[override]
        raise NotImplementedError

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        raise NotImplementedError

    def schedule(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        return self.answer


def jobs(deadlines: Sequence[float]) -> list[Job]:
    route = Route("t", (0,), ("cpu",), 1.0, None, 1.0)
    return [Job(i, "t", route, 0, 0.0, d, None) for i, d in enumerate(deadlines)]


PLAN = Plan({}, SolveInfo("none", "ok", 0.0))


def test_assign_keeps_order_gives_a_processor_one_job_and_drops_named_or_late_jobs() -> None:
    policy = Scripted([(0, "cpu", 2), (1, "cpu", 1), (2, None, 0), (3, "gpu", 0), (4, "npu", 1)])
    out = assign(policy, jobs([50.0] * 5), frozenset({"cpu", "gpu"}), PLAN, None, 10.0)  # type: ignore[arg-type]
    # Job 1 finds the cpu taken and keeps its place; job 4 names a busy processor; a count of 0 runs one block.
    assert out == [(0, "cpu", 2), (2, None, 0), (3, "gpu", 1)]
    late_policy = Scripted([(0, "cpu", 1), (1, "gpu", 1)], drop_late=True)
    assert assign(late_policy, jobs([5.0, 50.0]), frozenset({"cpu", "gpu"}), PLAN, None, 10.0) == [  # type: ignore[arg-type]
        (0, None, 0), (1, "gpu", 1)]


def test_assign_refuses_a_job_scheduled_twice() -> None:
    policy = Scripted([(0, "cpu", 1), (0, "gpu", 1)])
    with pytest.raises(ValueError, match="scheduled job 0 twice"):
        assign(policy, jobs([50.0]), frozenset({"cpu", "gpu"}), PLAN, None, 0.0)  # type: ignore[arg-type]
