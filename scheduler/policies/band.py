"""Band baselines (MobiSys'22), as mrsnu/band implements them (read at commit 8600d49).

Band does not choose variants, so each task's whole variant comes from the same ILP as AV
(whole variants, partitioning allowed, same solver settings) and is kept for the whole run.
Band's schedulers declare ``GetWorkerType() == kGlobalQueue``: requests wait in one queue,
each worker holds one job at a time, and ``Schedule`` hands jobs to idle workers. A job runs
one subgraph (a run of consecutive unit sub-graphs on one worker) at a time; what is left of
it goes back to the tail of the queue as a follow-up job. Both use the sample configs'
``schedule_window_size`` of 10 (``script/config_samples/benchmark_{lsf,heft}.json``).

- ``band-lsf`` (``least_slack_first_scheduler.cc``): the window's jobs are sorted by slack
  (deadline - now - shortest expected finish, given the workers' waiting times); in that order
  each job whose expected finish is past its deadline is dropped, and each whose best plan
  starts on an idle worker is dispatched (the worker's waiting time grows by the subgraph's
  latency); the others wait.
- ``band-heft`` (``heterogeneous_earliest_finish_time_scheduler.cc``, without reservation):
  repeatedly, among the window's jobs (the first of identical ones), the one with the *largest*
  shortest expected finish is taken; if the first worker of its plan is idle it is dispatched,
  else that worker's waiting time grows by the job's latency there and the job yields.

Both drop a job whose deadline has already passed when it is handed to a worker (Band's
planner, ``IsSLOViolated`` in ``EnqueueToWorker``): ``drop_late``.

Where this differs from Band's code, on purpose: a worker given a job is no longer idle within
the same call (Band's LSF keeps its idle snapshot and the planner re-queues the second job at
the tail); the DP's ties go to the first processor in the SoC file, not the last key; a move
between processors costs the SoC's transfer time (Band's latencies include it implicitly); the
queue keeps arrival order between calls (Band's LSF sorts its window of the deque in place).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from scheduler.dispatch import _wait, earliest_finish
from scheduler.ilp import Restriction
from scheduler.plan import Plan, Route
from scheduler.planner import ilp_plan, settings_from, with_unit_latencies
from scheduler.policy import Assignment, Job, PolicyBase, Queue, QueueView, with_slos
from scheduler.problem import Problem

# Band's sample configurations (benchmark_lsf.json, benchmark_heft.json) use 10.
WINDOW = 10


class BandPolicy(PolicyBase):
    queue: Queue = "global"

    def __init__(self, name: str, exhaustive: bool, window: int = WINDOW, drop_late: bool = True,
                 **options: Any) -> None:
        """``exhaustive``: least-slack-first (True) or HEFT (False); ``drop_late``: Band's planner drops
        jobs already past their deadline (False only to study the policy without it)."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.name = name
        self.exhaustive = exhaustive
        self.window = window
        self.drop_late = drop_late
        self.settings = replace(settings_from(**options), switching=False)

    def plan(self, problem: Problem) -> Plan:
        base = ilp_plan(problem, self.name, self.settings, Restriction(whole_variant=True))
        return with_unit_latencies(base, problem)

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        """Band serves the models it was given: an SLO change only moves the deadlines."""
        return with_slos(plan, problem)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return plan.routes[task]

    def schedule(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        if self.exhaustive:
            return self._lsf(jobs, idle, plan, state)
        return self._heft(jobs, idle, plan, state)

    def _lsf(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        now = state.now_ms
        free = set(idle)
        waiting: dict[str, float] = {}
        best = _Shortest(plan, waiting, state)
        window = range(min(self.window, len(jobs)))
        finish = {i: best(jobs[i])[1] for i in window}
        order = sorted(window, key=lambda i: jobs[i].deadline_ms - now - finish[i])
        out: list[Assignment] = []
        for i in order:
            if not free:
                break
            procs, f, first = best(jobs[i])
            if now + f > jobs[i].deadline_ms:
                out.append((i, None, 0))
                continue
            k = procs[0]
            if k in free:
                free.discard(k)
                waiting[k] = _wait(k, waiting, state) + first
                best.changed(k)
                out.append((i, k, _run_length(procs)))
        return out

    def _heft(self, jobs: Sequence[Job], idle: frozenset[str], plan: Plan, state: QueueView) -> list[Assignment]:
        now = state.now_ms
        free = set(idle)
        assigned: dict[str, float] = {}  # workers given a job in this call: busy for its first subgraph
        out: list[Assignment] = []
        window = list(range(min(self.window, len(jobs))))
        while window and free:
            waiting: dict[str, float] = dict(assigned)
            best = _Shortest(plan, waiting, state)
            yielded: set[int] = set()
            pick: tuple[int, tuple[str, ...], float] | None = None
            while True:
                top: tuple[int, tuple[str, ...], float] | None = None
                top_f = -1.0
                seen: set[tuple[str, int]] = set()
                for i in window:
                    key = (jobs[i].task, jobs[i].position)
                    if i in yielded or key in seen:
                        continue
                    seen.add(key)
                    procs, f, first = best(jobs[i])
                    if f > top_f:
                        top_f, top = f, (i, procs, first)
                if top is None:
                    return out
                i, procs, first = top
                if procs[0] in free:
                    pick = top
                    break
                waiting[procs[0]] = _wait(procs[0], waiting, state) + first
                best.changed(procs[0])
                yielded.add(i)
            i, procs, first = pick
            window.remove(i)
            if now > jobs[i].deadline_ms:
                out.append((i, None, 0))
                continue
            free.discard(procs[0])
            assigned[procs[0]] = first
            out.append((i, procs[0], _run_length(procs)))
        return out


class _Shortest:
    """:func:`shortest` memoised within one ``Schedule`` call: jobs of the same task at the same
    position after the same processor have the same plan while the waiting times stay put."""

    def __init__(self, plan: Plan, waiting: dict[str, float], state: QueueView) -> None:
        self.plan, self.waiting, self.state = plan, waiting, state
        self.memo: dict[tuple[str, int, str | None], tuple[tuple[str, ...], float, float]] = {}

    def __call__(self, job: Job) -> tuple[tuple[str, ...], float, float]:
        key = (job.task, job.position, job.previous)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = shortest(job, self.plan, self.waiting, self.state)
        return hit

    def changed(self, processor: str) -> None:
        """``processor``'s waiting time grew: only plans that use it can change (any other plan's
        finish is the same and every plan through ``processor`` got slower), so only they go."""
        self.memo = {key: hit for key, hit in self.memo.items() if processor not in hit[0]}


def _run_length(procs: Sequence[str]) -> int:
    """How many blocks the first subgraph of a plan covers: the leading run on one processor."""
    n = 1
    while n < len(procs) and procs[n] == procs[0]:
        n += 1
    return n


def shortest(job: Job, plan: Plan, waiting: dict[str, float], state: QueueView) -> tuple[tuple[str, ...], float, float]:
    """Band's ``GetShortestLatencyWithUnitSubgraph`` for the job's remaining blocks: the processor per
    block with the least expected finish (from now) given the workers' waiting times, that finish,
    and the latency of the plan's first subgraph (its leading run on one processor)."""
    blocks_ms: Sequence[Mapping[str, float]] = plan.block_latency_ms[job.task][job.position:]
    procs, finish = earliest_finish(blocks_ms, plan.block_transfer_ms[job.task], lambda k: _wait(k, waiting, state),
                                    job.position, job.previous)
    first = 0.0
    for n in range(_run_length(procs)):
        first += blocks_ms[n][procs[0]]
    return procs, finish, first
