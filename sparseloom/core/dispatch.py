"""A request's way in: its route and admission at arrival, the blocks loaded for it at dispatch, and
when it is dropped as too late. One rule each, for the simulator and the runtime.

- **Arrival** (:func:`arrive`): the policy's admission (if it declares one) sees the arrival, the
  policy's ``decide`` picks the route on the driver's queue view, and admission keeps or sheds it.
  The time of the whole decision is the request's decision time.
- **Dispatch** (:func:`prefetch`): an admitted request's blocks that are not resident start loading
  at once, in route order (the differential set of a task switch), as far as memory allows without
  evicting a block a dispatched request needs; the first that does not fit, and those after it,
  load when their processor takes them (a demand load, which may evict needed blocks).
- **Queue order** (:func:`queue_key`): a block waiting for its processor is served earliest
  deadline first, ties by arrival, or first come, first served, as the policy declares.
- **Late drop** (:func:`late`): with the policy's ``drop_late``, a request whose next block is about
  to start is dropped when, even if its remaining blocks ran at once at their expected latencies
  (transfers included), it would end past its deadline (arrival + the SLO in force at arrival).
- **Global queue** (:func:`assign`, Band's ``Schedule(JobQueue&)``): for a ``queue == "global"``
  policy, which waiting jobs start their next block(s) on which idle processor, and which are
  dropped (the policy names them, or with ``drop_late`` their deadline has passed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from scheduler.admission import Admission
from scheduler.plan import Plan, Route
from scheduler.policy import Job, Policy, QueueView
from scheduler.problem import Problem

K = TypeVar("K")


def admission_for(policy: Policy, problem: Problem) -> Admission | None:
    """The policy's admission control, when it declares one; a global queue (Band) has none: its
    schedule drops what it will not run."""
    return Admission(problem) if policy.admission and policy.queue == "processor" else None


def arrive(
    policy: Policy, admission: Admission | None, task: str, plan: Plan, view: QueueView, now_ms: float
) -> tuple[Route, bool, int]:
    """The arriving request's route, whether it is admitted, and the decision's wall time (ns)."""
    t0 = time.perf_counter_ns()
    if admission is not None:
        admission.arrive(task, now_ms)
    route = policy.decide(task, plan, view)
    admitted = admission is None or admission.admit(route, plan, now_ms)
    return route, admitted, time.perf_counter_ns() - t0


def prefetch(blocks: Iterable[K], missing: Callable[[K], bool], start: Callable[[K], bool]) -> None:
    """Start the loads of a dispatched request's ``blocks`` (route order, each once) that are
    ``missing``; ``start(b)`` begins one without evicting a needed block and returns False when it
    cannot, which ends the prefetch (the rest load on demand)."""
    for b in blocks:
        if missing(b) and not start(b):
            return


def queue_key(by_deadline: bool, deadline_ms: float, arrival: int, joined: int) -> tuple[float, int]:
    """A queued block's place in its processor's queue (smallest first): its request's deadline, ties by
    the request's ``arrival`` order, or (FIFO) the order ``joined`` in which blocks joined queues."""
    return (deadline_ms if by_deadline else float(joined), arrival)


def late(now_ms: float, left_ms: float, deadline_ms: float) -> bool:
    """Whether a request with ``left_ms`` of expected work left, starting now, ends past its deadline."""
    return now_ms + left_ms > deadline_ms


def assign(policy: Policy, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, view: QueueView,
           now_ms: float) -> list[tuple[int, str | None, int]]:
    """The global queue's next moves, in the order the policy gave them: (index into ``jobs``,
    processor, blocks to run there back to back), or (index, None, 0) for a job dropped. A processor
    given one job in this call takes no second; a job named twice is the policy's error."""
    out: list[tuple[int, str | None, int]] = []
    gone: set[int] = set()
    taken: set[str] = set()
    for i, proc, count in policy.schedule(jobs, idle, plan, view):
        if i in gone:
            raise ValueError(f"policy {policy.name!r} scheduled job {i} twice in one call")
        if proc is None or (policy.drop_late and late(now_ms, 0.0, jobs[i].deadline_ms)):
            gone.add(i)
            out.append((i, None, 0))
            continue
        if proc in taken or proc not in idle:
            continue  # the processor is taken: the job keeps its place
        gone.add(i)
        taken.add(proc)
        out.append((i, proc, max(1, count)))
    return out
