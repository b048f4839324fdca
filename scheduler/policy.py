"""The one small interface every policy implements, SparseLoom's own and each baseline.

The simulator and the runtime hold a :class:`Policy` and never branch on its name. What a
policy needs from them is declared, not probed (Band's ``GetWorkerType``): ``queue`` says
where requests wait, ``drop_late`` whether requests that can no longer meet their deadline
are dropped, ``admission`` whether an expensive request is shed at arrival when it would cost more
cheap requests than it serves (:mod:`scheduler.admission`). :class:`PolicyBase` gives every declaration its default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from scheduler.feedback import Feedback
from scheduler.plan import Plan, Route
from scheduler.problem import Problem

# "processor": a request's route is decided at arrival and each block waits in its processor's
# FIFO queue. "global": requests wait in one queue and the policy's ``schedule`` hands the next
# block of queued requests to idle processors (Band's kGlobalQueue workers).
Queue = Literal["processor", "global"]
# How a processor's queue is served ("processor" queues only): "deadline" (earliest deadline first:
# arrival + the SLO in force at arrival, ties by arrival) or "fifo" (the order blocks join it).
Order = Literal["deadline", "fifo"]
ORDERS = ("deadline", "fifo")


def check_order(policy: Policy) -> bool:
    """Whether ``policy`` serves its processor queues earliest deadline first (else FIFO); ValueError
    for an order the engines do not know."""
    if policy.order not in ORDERS:
        raise ValueError(f"policy {policy.name!r} declares order={policy.order!r}; known: {', '.join(ORDERS)}")
    return policy.order == "deadline"


class QueueView(Protocol):
    """Live state a policy may read when it dispatches a request."""

    @property
    def now_ms(self) -> float: ...

    def backlog_ms(self, processor: str) -> float:
        """Time until ``processor`` would start a newly queued block."""
        ...

    def is_resident(self, digest: str) -> bool: ...

    @property
    def memo(self) -> dict[str, object]:
        """Scratch state a policy keeps for the length of one run (the engine owns it, so policies stay
        stateless and runs never share it): a dispatch's hysteresis, for example."""
        ...


@dataclass(frozen=True)
class Job:
    """A request waiting in the global queue for its next block (Band's ``Job``)."""

    request: int
    task: str
    # The route whose variant the request runs; ``position`` is its next block.
    route: Route
    position: int
    enqueue_ms: float
    deadline_ms: float
    # Processor of the previous block (None before the first): a move there costs a transfer.
    previous: str | None


# A scheduling decision: (index into the jobs given, processor, blocks to run there back to back),
# or (index, None, 0) to drop the job.
Assignment = tuple[int, str | None, int]


class Policy(Protocol):
    """Plans offline, decides online."""

    name: str
    queue: Queue
    order: Order
    drop_late: bool
    # Per-processor queues only: shed by :class:`scheduler.admission.Admission` at arrival.
    admission: bool
    # Global queue only: how many jobs from the queue's head ``schedule`` looks at (Band's
    # ``schedule_window_size``); the engines pass no more than this.
    window: int

    def plan(self, problem: Problem) -> Plan:
        """Choose a route per task (and residency) for the whole problem."""
        ...

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        """Pick the route for one arriving request; must be fast (target p99 <= 100 us). With
        ``admission`` the engine may still shed it (the time counts as the decision's)."""
        ...

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        """The plan after a change of the problem (SLOs, rates, budget); ``plan`` is the one in force."""
        ...

    def switch(self, plan: Plan, problem: Problem) -> Plan | None:
        """A plan for a changed problem made at once, without a full re-plan (for the runtime to use
        while :meth:`replan` runs off the hot path), or None when the policy has no quick switch."""
        ...

    def schedule(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        """For ``queue == "global"``: which queued jobs start their next block on which idle processor,
        and which are dropped. Jobs not named stay queued, in order."""
        ...

    # Whether the engines show the policy the latencies they observe (``recalibrate``).
    closed_loop: bool

    def recalibrate(self, problem: Problem, plan: Plan, feedback: Feedback) -> Plan | None:
        """For ``closed_loop``: a new plan on the observed latencies when they are far enough from those
        ``plan`` was made on, else None (keep it)."""
        ...


class PolicyBase:
    """Defaults for the declarations and optional hooks of :class:`Policy`: a policy declares what it
    does by overriding them, and the engines call every hook without asking whether it exists."""

    name: str
    queue: Queue = "processor"
    # Every per-processor-queue policy, ours and the baselines', is served earliest deadline first:
    # the same machinery for all. EDF, not FIFO, by measurement (benchmarks/queue_order.py): with FIFO
    # a 2 ms request waits behind whole MiniLM blocks queued before it.
    order: Order = "deadline"
    # Drop a request that can no longer meet its deadline instead of running it: in the global queue
    # when its deadline has passed as a processor would take its next block (Band's planner); with
    # per-processor queues when, as its next block would start, even running the rest at once
    # (expected latencies) ends past the deadline. Off here; every shipped policy turns it on.
    drop_late: bool = False
    # Shed an expensive request at arrival when its blocks would make more cheap requests miss than
    # the one it serves (scheduler/admission.py). It refines drop_late under overload, so it is
    # machinery every per-processor policy gets, ours and SV/AV alike; off here, on in each of them.
    admission: bool = False
    window: int = 2**31 - 1  # Band's default, INT_MAX: the whole queue

    def plan(self, problem: Problem) -> Plan:
        raise NotImplementedError

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        return self.plan(problem)

    def switch(self, plan: Plan, problem: Problem) -> Plan | None:
        return None

    def schedule(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        raise NotImplementedError(f"policy {self.name!r} declares queue={self.queue!r}; it has no global schedule")

    closed_loop: bool = False

    def recalibrate(self, problem: Problem, plan: Plan, feedback: Feedback) -> Plan | None:
        return None


def with_slos(plan: Plan, problem: Problem) -> Plan:
    """``plan`` unchanged but for the SLOs it dispatches against (a policy that keeps its routes)."""
    return replace(plan, slo_ms={t.name: t.latency_slo_ms for t in problem.tasks})
