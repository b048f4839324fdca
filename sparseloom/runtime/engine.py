"""The runtime: a plan run for real on the host's processors, request by request, block by block.

Each request gets its route from ``policy.decide(task, plan, view)`` where the
view reads the live worker queues and the resident blocks; admission, what the plan
expects of each block, queue order, the blocks prefetched at dispatch, a plan's loads,
late drops, SLO changes and the closed loop's timing follow the rules the simulator
follows too (:mod:`sparseloom.core`). Its blocks then flow through the workers of
the processors the route names: a worker runs a block (loading it from the pool
when no prefetch has, within the memory budget) and hands the output tensors to
the next block's worker. The result future receives the last block's real outputs.

Overload protection: at most ``max_in_flight`` requests are admitted at once
(each holds one queue slot at a time, so queues and activations stay bounded);
a request beyond that is rejected at once and recorded as a violation, as is
one whose route is expected to finish later than ``shed_factor`` times its
latency SLO when that is set. With the policy's ``admission``, a request whose
blocks would make more cheaper requests miss than it serves is shed at arrival
(:mod:`scheduler.admission`), and with its ``drop_late`` a request whose next
block would start too late to finish by its deadline is dropped, both as in the
simulator. Nothing blocks the caller of :meth:`submit`.

A global-queue policy (Band's) keeps its requests in one queue instead: whenever one arrives or a
worker idles, its ``schedule`` hands queued jobs' next blocks to idle workers by the simulator's
rule (:func:`sparseloom.core.dispatch.assign`), and a request whose assigned blocks have run
rejoins the queue's tail.

The cyclic garbage collector's full collections would scan every object torch and TVM
hold, with the GIL held: one took 191 ms mid-run on this host (digits requests have a
2 ms SLO), so the replay and every worker stalled and the requests behind them missed.
With ``freeze_heap`` (the default) the runtime moves the objects alive once its blocks
are loaded, and again after :meth:`warm`, to the collector's permanent generation
(``gc.freeze``), so collections scan only what the run creates; :meth:`close` hands them
back (``gc.unfreeze``, process-wide: a second runtime open in the same process is thawed too).

SLO changes switch routes at once with the policy's ``switch`` (unless it
returns None) and re-plan off the hot path with ``replan``; requests keep
flowing on the current plan meanwhile, as in the simulator. A ``closed_loop``
policy is shown the measured block latencies (per block x processor, against
the profile) at an arrival FEEDBACK_EVERY_MS after the last showing, never while a
re-plan is in flight (:meth:`sparseloom.core.slo.Replans.feedback_due`), as in the simulator, and the plan its
``recalibrate`` returns is installed off the hot path the same way.
"""

from __future__ import annotations

import gc
import itertools
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import psutil
import torch

from backends.base import cache_options
from backends.processor import SoCSpec
from scheduler.feedback import Feedback
from scheduler.plan import Plan, Route
from scheduler.policy import Job, Policy, check_order
from scheduler.problem import Problem
from sparseloom.core.decisions import Decisions
from sparseloom.core.dispatch import admission_for, arrive, assign, late, queue_key
from sparseloom.core.expected import expected, placed_ms
from sparseloom.core.overload import MAX_IN_FLIGHT, Overload
from sparseloom.core.residency import plan_loads, route_digests
from sparseloom.core.slo import Replans, SLOChangeEvent, retarget
from sparseloom.runtime.host import processors_present
from sparseloom.runtime.residency import Residency
from sparseloom.runtime.stats import Recorder, RuntimeStats, TaskStats, result
from sparseloom.runtime.workers import Worker, WorkerDied
from sparseloom.core.metrics import RunResult, run_result


class Rejected(RuntimeError):
    """A request the runtime did not admit (overload); it counts as an SLO violation."""


@dataclass(frozen=True)
class Step:
    processor: int
    digest: str
    expected_ms: float  # the block, as the plan expects it (sparseloom.core.expected)
    block_ms: float  # the block alone, from the profile (what the closed loop compares against)


@dataclass
class _Request:
    rid: int
    task: int
    steps: tuple[Step, ...]
    tensors: tuple[torch.Tensor, ...]
    future: Future[Any]
    deadline_ms: float  # arrival + the latency SLO in force at arrival (runtime clock)
    left_ms: tuple[float, ...] = ()  # per position, the expected work left from its start (core.expected)
    arrival_ms: float = 0.0
    route: Route | None = None  # kept for a global-queue policy, which places each block as it goes
    previous: int = -1  # processor of its previous block (global queue)
    run_left: int = 0  # blocks still to run back to back on the same processor (global queue)
    position: int = 0
    run_ms: float = 0.0  # time its blocks ran so far (measured)
    # Its first block's worker: when it took the request (its arrival, or the end of the block before
    # if busy then), how long it had idled, whether its previous block was the same task's.
    taken_ms: float = 0.0
    woke_after_ms: float = 0.0
    warm: bool = False
    block_start_ms: float = 0.0  # when its latest block started running (at the end: its last block)


class _View:
    """The :class:`scheduler.policy.QueueView` of the live workers and resident blocks."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._workers = {w.processor: w for w in runtime.workers}
        self.memo: dict[str, object] = {}

    @property
    def now_ms(self) -> float:
        return self._rt.now_ms()

    def backlog_ms(self, processor: str) -> float:
        w = self._workers[processor]
        return max(0.0, w.busy_until_ms - self._rt.now_ms()) + w.queued_ms

    def is_resident(self, digest: str) -> bool:
        return self._rt.residency.is_resident(digest)


class Runtime:
    """Runs ``problem`` under ``policy`` on the processors of ``soc`` present on this host.

    ``pool`` holds every block the problem names (by digest); compiled blocks are
    cached under ``cache_dir``. Every processor the problem names must be present here.
    ``decisions``, when given, records each request's route and every load and eviction, in order.
    ``freeze_heap``: keep the objects alive at start out of the garbage collector's scans until
    :meth:`close` (see the module docstring); off for a caller that manages ``gc.freeze`` itself.
    """

    def __init__(
        self,
        problem: Problem,
        policy: Policy,
        soc: SoCSpec,
        pool: Any,
        *,
        cache_dir: Path,
        plan: Plan | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        shed_factor: float | None = None,
        memory_wait_s: float = 10.0,
        decisions: Decisions | None = None,
        freeze_heap: bool = True,
    ) -> None:
        self.overload = Overload(max_in_flight, shed_factor)  # validates both
        procs = {p.name: p for p in soc.processors}
        missing = [p.name for p in problem.processors if p.name not in procs]
        if missing:
            raise ValueError(f"processor(s) {', '.join(missing)} of the problem are not in the SoC {soc.name!r}")
        here = processors_present(soc)
        absent = [p.name for p in problem.processors if p.name not in here]
        if absent:
            raise ValueError(
                f"processor(s) {', '.join(absent)} are not present on this host; restrict the problem to "
                f"the host's processors ({', '.join(here) or 'none'}) with sparseloom.runtime.host.restrict"
            )
        self.problem = problem
        self.policy = policy
        self._t0 = time.perf_counter_ns()
        self._lock = threading.RLock()
        self._in_flight = 0
        self._closed = False
        self._task_index = {t.name: i for i, t in enumerate(problem.tasks)}
        self._proc_index = {p.name: i for i, p in enumerate(problem.processors)}
        self.recorder = Recorder([t.name for t in problem.tasks], [p.name for p in problem.processors])
        memory_mb = {o.digest: o.memory_mb for t in problem.tasks for opts in t.positions for o in opts}
        self.residency = Residency(
            pool,
            {p.name: procs[p.name] for p in problem.processors},
            problem.memory_budget_mb,
            memory_mb,
            cache_options(Path(cache_dir)),
            self.now_ms,
            self.recorder.memory,
            wait_s=memory_wait_s,
            decisions=decisions,
        )
        self._decisions = decisions
        self._global = policy.queue == "global"
        self._gq: list[_Request] = []  # requests waiting for their next block, in order (global queue)
        self._by_deadline = check_order(policy)
        self._joined = itertools.count()  # FIFO keys: the order blocks join their queues
        self.workers = [Worker(p.name, i, self._execute, self._worker_died,
                               self._on_idle if self._global else None)
                        for i, p in enumerate(problem.processors)]
        # Processor -> the error its worker died of: reported by the run, never waited on.
        self.dead_workers: dict[str, str] = {}
        self._view = _View(self)
        self._admission = admission_for(policy, problem)
        self._current: dict[str, Route] = {}
        self._feedback = Feedback()
        self._replans = Replans()
        self._replanner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sparseloom-replan")
        self._process = psutil.Process()
        self._rss_peak_mb = self.rss_mb()
        self._stop_monitor = threading.Event()
        t0 = time.perf_counter()
        self.plan = plan if plan is not None else policy.plan(problem)
        self.plan_wall_s = time.perf_counter() - t0 if plan is None else 0.0
        for w in self.workers:
            w.start()
        self._apply(self.plan)
        self._monitor = threading.Thread(target=self._watch_rss, name="sparseloom-rss", daemon=True)
        self._monitor.start()
        self._t0 = time.perf_counter_ns()  # requests count from here, after the initial loads
        self.recorder.restart_clock()
        self._freeze_heap = freeze_heap
        self._freeze()

    def _freeze(self) -> None:
        """Keep what is alive now out of the collector's full collections (see the module docstring).
        No gc.collect() first: it takes as long as the pause avoided, and garbage frozen here is
        collected after close thaws it."""
        if self._freeze_heap:
            gc.freeze()

    # -- time and memory

    def now_ms(self) -> float:
        return (time.perf_counter_ns() - self._t0) / 1e6

    def rss_mb(self) -> float:
        return float(self._process.memory_info().rss) / 2**20

    def _watch_rss(self) -> None:
        while not self._stop_monitor.wait(0.05):
            self._rss_peak_mb = max(self._rss_peak_mb, self.rss_mb())

    # -- plans

    def _apply(self, plan: Plan) -> None:
        self.residency.apply_plan(plan.resident, plan_loads(self.problem, plan))

    def warm(self, progress: Callable[[str], None] = lambda s: None) -> float:
        """Compile every block of every planned route and alternative into the compile cache; seconds spent."""
        total = 0.0
        pairs = {
            (d, k)
            for r in (*self.plan.routes.values(), *(x for a in self.plan.alternatives.values() for x in a))
            for d, k in zip(route_digests(self.problem, r), r.processors)
        }
        for d, k in sorted(pairs):
            progress(f"compile {d[:12]} for {k}")
            total += self.residency.warm(d, k)
        self._freeze()
        return total

    def set_slo(self, task: str, latency_ms: float | None = None, min_accuracy: float | None = None) -> Plan:
        """Change a task's SLO as the simulator does (:func:`sparseloom.core.slo.retarget`): switch routes
        now (the policy's ``switch``, unless it returns None), then re-plan in the background
        (``replan``, on the plan then in force) and install that plan when it is ready, unless the SLOs
        changed again meanwhile.

        Returns the plan in force once this call returns.
        """
        if task not in self._task_index:
            raise KeyError(task)
        with self._lock:
            change = retarget(self.policy, self.problem, SLOChangeEvent(self.now_ms(), task, latency_ms, min_accuracy),
                              self.plan)
            self.problem = change.problem
            generation = self._replans.start()
            self._replans.in_flight += 1
            if change.switched is not None:
                self.recorder.replan_ns.append(change.switch_ns)
                self.plan = change.switched
                if self._global:
                    self._schedule_global()
            plan = self.plan
        if change.switched is not None:
            self._replanner.submit(self._apply, change.switched)
        self._replanner.submit(self._replan, change.problem, plan, generation)
        return plan

    def _replan(self, problem: Problem, plan: Plan, generation: int) -> None:
        """Re-plan on ``plan``, the one in force at the SLO change (as the simulator does), not on one
        a recalibration installed since."""
        try:
            t0 = time.perf_counter_ns()
            self._install(self.policy.replan(problem, plan), generation, t0)
        finally:
            with self._lock:
                self._replans.in_flight -= 1

    def _recalibrate(self, problem: Problem, seen: Feedback, generation: int) -> None:
        try:
            t0 = time.perf_counter_ns()
            plan = self.policy.recalibrate(problem, self.plan, seen)
            if plan is not None:
                self._install(plan, generation, t0)
        finally:
            with self._lock:
                self._replans.in_flight -= 1

    def _install(self, plan: Plan, generation: int, t0_ns: int) -> None:
        """Serve ``plan``, made from ``t0_ns`` on for the SLOs of ``generation``, unless they changed since
        (a newer SLO change re-plans again)."""
        with self._lock:
            self.recorder.replan_ns.append(time.perf_counter_ns() - t0_ns)
            if not self._replans.current(generation):
                return
            self.plan = plan
        self._apply(plan)
        if self._global:  # the new plan may place waiting jobs, as the simulator asks on a plan's arrival
            with self._lock:
                self._schedule_global()

    def wait_replans(self) -> None:
        """Block until background re-plans and loads queued so far have finished."""
        self._replanner.submit(lambda: None).result()

    # -- requests

    def submit(self, task: str, *inputs: torch.Tensor) -> Future[Any]:
        """Run one request of ``task`` on ``inputs`` (the model's inputs, batch 1); a future of its outputs.

        The future's result is the last block's output tensor (a tuple when it has several);
        a rejected request's future raises :class:`Rejected`.
        """
        k = self._task_index.get(task)
        if k is None:
            raise KeyError(task)
        fut: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the runtime is closed")
            now = self.now_ms()
            spec = self.problem.tasks[k]
            if self.policy.closed_loop and self._replans.feedback_due(now):
                # Shown at the arrival, before its decision, as in the simulator (core.slo).
                self._replans.in_flight += 1
                self._replanner.submit(self._recalibrate, self.problem, self._feedback.copy(), self._replans.generation)
            route, admitted, dec = arrive(self.policy, self._admission, task, self.plan, self._view, now)
            if self._decisions is not None:
                self._decisions.routes.append((task, tuple(route.options), tuple(route.processors)) if admitted else None)
            digests = route_digests(self.problem, route)
            exp = expected(self.problem, route)
            steps = tuple(
                Step(self._proc_index[p], d, exp.block_ms[i], float(spec.positions[i][route.options[i]].latency_ms[p]))
                for i, (d, p) in enumerate(zip(digests, route.processors))
            )
            acc = spec.accuracy(route.options)
            rid = self.recorder.arrive(
                now, k, spec.latency_slo_ms, acc, acc is not None and acc < spec.min_accuracy - 1e-12, dec
            )
            self._current[task] = route
            reason = self.overload.refusal(self._in_flight, admitted, spec.latency_slo_ms,
                                           ((p, s.expected_ms) for p, s in zip(route.processors, steps)), self._view)
            if reason is not None:
                self.recorder.reject(rid)
                fut.set_exception(Rejected(f"request of {task!r} rejected: {reason}"))
                return fut
            self.recorder.variant(k, tuple(route.options), now)
            self._in_flight += 1
            self.residency.want(digests)
            self.residency.prefetch(digests, route.processors)
            req = _Request(rid, k, steps, tuple(inputs), fut, now + spec.latency_slo_ms, exp.left_ms, now, route)
            if self._global:
                self._gq.append(req)
                self._schedule_global()
            else:
                self._hand(req, steps[0])
        return fut

    def _on_idle(self, worker: Worker[_Request]) -> None:
        with self._lock:
            self._schedule_global()

    def _schedule_global(self) -> None:
        """Ask the policy which waiting requests run next where (Band's ``Schedule(JobQueue&)``, by
        the simulator's rule: :func:`sparseloom.core.dispatch.assign`); callers hold the lock."""
        if not self._gq:  # closing only stops admission: queued requests still finish
            return
        idle = frozenset(w.processor for w in self.workers if w.idle)
        if not idle:
            return
        head = self._gq[: max(1, int(self.policy.window))]
        tasks, procs = self.problem.tasks, self.problem.processors
        jobs = [Job(r.rid, tasks[r.task].name, r.route, r.position, r.arrival_ms, r.deadline_ms,  # type: ignore[arg-type]
                    procs[r.previous].name if r.previous >= 0 else None) for r in head]
        gone: set[int] = set()
        for i, proc, count in assign(self.policy, jobs, idle, self.plan, self._view, self.now_ms()):
            req = head[i]
            gone.add(i)
            if proc is None:
                self._finish(req)
                self.recorder.reject(req.rid)
                req.future.set_exception(Rejected("request dropped by the global queue's schedule (past its deadline)"))
                continue
            req.run_left = count - 1
            self._place(req, self._proc_index[proc])
        if gone:
            self._gq[: len(head)] = [r for i, r in enumerate(head) if i not in gone]

    def _place(self, req: _Request, p: int) -> None:
        """Hand the request's next block to processor ``p``'s worker (global queue), its expected
        latency there plus the move from its previous processor, as the simulator charges it."""
        task = self.problem.tasks[req.task]
        pos = req.position
        assert req.route is not None
        option = req.route.options[pos]
        proc = self.problem.processors[p].name
        previous = self.problem.processors[req.previous].name if req.previous >= 0 else None
        step = Step(p, req.steps[pos].digest, placed_ms(self.problem, task, pos, option, previous, proc),
                    float(task.positions[pos][option].latency_ms[proc]))
        req.steps = (*req.steps[:pos], step, *req.steps[pos + 1:])
        if self._decisions is not None:
            self._decisions.assignments.append((task.name, pos, proc))
        self._hand(req, step)

    def _hand(self, req: _Request, step: Step) -> None:
        """Queue ``req`` on ``step``'s worker, or fail it at once when that worker has died."""
        try:
            key = queue_key(self._by_deadline, req.deadline_ms, req.rid, next(self._joined))
            self.workers[step.processor].put(req, step.expected_ms, key)
        except WorkerDied as err:
            self._fail(req, err)

    def _fail(self, req: _Request, err: BaseException) -> None:
        if req.future.done():
            return
        self._finish(req)
        self.recorder.reject(req.rid, error=True)
        req.future.set_exception(err)

    def _worker_died(self, worker: Worker[_Request], err: BaseException, pending: list[_Request]) -> None:
        """A worker thread died: say so, and fail its running and queued requests instead of leaving them."""
        message = f"the {worker.processor} worker died ({err!r}); its requests failed"
        with self._lock:
            self.dead_workers[worker.processor] = repr(err)
        print(f"sparseloom runtime: {message}", file=sys.stderr)
        for req in pending:
            self._fail(req, WorkerDied(message))

    def _execute(self, worker: Worker[_Request], req: _Request) -> None:
        step = req.steps[req.position]
        if req.position == 0:
            req.taken_ms = max(req.arrival_ms, worker.idle_since_ms)
            req.woke_after_ms = max(0.0, req.arrival_ms - worker.idle_since_ms)
            req.warm = worker.last_task == req.task
        if self.policy.drop_late and not self._global:  # the global queue drops at assignment
            # As in the simulator: a request that cannot finish by its deadline even if the rest runs at
            # once (expected latencies) is dropped, not run at the others' expense.
            left = req.left_ms[req.position]
            now = self.now_ms()
            if late(now, left, req.deadline_ms):
                self._finish(req)
                # Its start cost so far is a wake sample too, so the probes' costs are not only those
                # of the requests fast enough to finish: at the first block, the worker's pick-up
                # (waking, the last request's completion), which on a loaded host alone can take
                # milliseconds and makes most late drops.
                woke = (req.woke_after_ms, req.warm, req.taken_ms, now, tuple(s.digest for s in req.steps[: req.position + 1]))
                self.recorder.reject(req.rid, woke=woke)
                req.future.set_exception(Rejected(f"request dropped: {left:.2f} ms of blocks left, past its deadline"))
                return
        try:
            runner = self.residency.acquire(step.digest, worker.processor)
            try:
                start = req.block_start_ms = self.now_ms()
                worker.started(start, step.expected_ms)
                outs = runner(*aligned(req.tensors))
                end = self.now_ms()
                worker.idle_since_ms, worker.last_task = end, req.task
                # The block's run time alone (a load, if any, is not in it).
                self.recorder.executed(worker.index, req.task, end - start, step.digest)
                if self.policy.closed_loop:
                    with self._lock:
                        self._feedback.add(step.digest, worker.processor, step.block_ms, end - start)
                req.run_ms += end - start
            finally:
                self.residency.release(step.digest)
        except Exception as err:  # noqa: BLE001 - the request fails, the runtime keeps serving
            self._fail(req, err)
            return
        req.tensors = outs
        self.residency.unwant((step.digest,))
        req.position += 1
        if req.position < len(req.steps):
            if self._global:
                with self._lock:
                    req.previous = worker.index
                    if req.run_left > 0:
                        req.run_left -= 1
                        self._place(req, worker.index)
                    else:  # Band's follow-up job: back to the queue's tail, scheduled when this worker idles
                        self._gq.append(req)
                return
            # A real hand-off: the next worker receives the output tensors themselves.
            self._hand(req, req.steps[req.position])
            return
        self.recorder.done(req.rid, self.now_ms(), req.run_ms, sum(s.expected_ms for s in req.steps),
                           (req.woke_after_ms, req.warm, req.taken_ms, req.block_start_ms,
                            tuple(s.digest for s in req.steps)))
        self._finish(req)
        req.future.set_result(outs[0] if len(outs) == 1 else outs)

    def _finish(self, req: _Request) -> None:
        """The request ends (done, dropped or failed): the blocks it has not run are no longer wanted."""
        self.residency.unwant(s.digest for s in req.steps[req.position:])
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until no request is in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._in_flight > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop admitting, let in-flight requests finish (up to ``timeout_s``), stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.drain(timeout_s)
        for w in self.workers:
            w.stop()
        for w in self.workers:
            w.join(timeout=timeout_s)
        self._replanner.shutdown(wait=True)
        self.residency.close()
        self._stop_monitor.set()
        self._monitor.join(timeout=1.0)
        if self._freeze_heap:
            gc.unfreeze()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statistics

    def stats(self) -> RuntimeStats:
        """Live figures over every request finished so far (done or rejected), measured."""
        now = max(self.now_ms(), 1e-3)
        c = self.residency.counters()
        raw = self.recorder.raw(
            finished_only=True, peak_mb=c.peak_mb, loads=c.loads, load_ms=c.load_ms, evictions=c.evictions
        )
        res = run_result(
            raw, policy=self.policy.name, seed=0, duration_s=now / 1000.0 + 1e-9, warmup_s=0.0,
            sim_wall_s=now / 1000.0, plan_wall_s=self.plan_wall_s,
        )
        requests, rejected, flying = self.recorder.counts()
        per_task: dict[str, TaskStats] = {}
        for k, t in enumerate(self.problem.tasks):
            m = res.per_task[t.name]
            route = self._current.get(t.name) or self.plan.routes.get(t.name)
            per_task[t.name] = TaskStats(
                task=t.name,
                requests=int(requests[k]),
                completed=m.completed,
                rejected=int(rejected[k]),
                in_flight=int(flying[k]),
                violations=m.violations,
                slo_violation_rate=m.slo_violation_rate,
                throughput_rps=m.throughput_rps,
                latency_ms=m.latency_ms,
                mean_accuracy=m.mean_accuracy,
                latency_slo_ms=t.latency_slo_ms,
                min_accuracy=t.min_accuracy,
                variant=route.variants if route is not None else (),
                processors=route.processors if route is not None else (),
            )
        rss = self.rss_mb()
        self._rss_peak_mb = max(self._rss_peak_mb, rss)
        return RuntimeStats(
            uptime_s=now / 1000.0,
            requests=int(requests.sum()),
            completed=res.completed,
            rejected=int(rejected.sum()),
            errors=self.recorder.errors,
            in_flight=int(flying.sum()),
            slo_violation_rate=res.slo_violation_rate,
            throughput_rps=res.throughput_rps,
            latency_ms=res.latency_ms,
            per_task=per_task,
            memory_budget_mb=self.residency.budget_mb,
            resident_mb=c.resident_mb,
            peak_resident_mb=c.peak_mb,
            resident_blocks=c.resident_blocks,
            rss_mb=rss,
            peak_rss_mb=self._rss_peak_mb,
            loads=c.loads,
            evictions=c.evictions,
            utilisation=dict(res.utilisation),
            policy=self.policy.name,
            replans=len(self.recorder.replan_ns),
        )

    def result(self, *, duration_s: float, warmup_s: float = 0.0, seed: int = 0, origin_ms: float = 0.0) -> RunResult:
        """The run's metrics with the simulator's definitions over ``[warmup_s, duration_s)`` after ``origin_ms``
        (runtime clock; a replay's start).

        Requests still in flight count as unfinished (infinite latency), as in the simulator.
        """
        c = self.residency.counters()
        raw = self.recorder.raw(
            finished_only=False, peak_mb=c.peak_mb, loads=c.loads, load_ms=c.load_ms, evictions=c.evictions,
            origin_ms=origin_ms,
        )
        return result(
            raw, policy=self.policy.name, seed=seed, duration_s=duration_s, warmup_s=warmup_s,
            wall_s=self.now_ms() / 1000.0, plan_wall_s=self.plan_wall_s,
        )



def aligned(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Contiguous tensors on 64-byte boundaries: TVM takes inputs zero-copy through DLPack only then
    (a slice of a larger tensor, or numpy-owned memory, may be anywhere)."""
    return tuple(
        t if t.is_contiguous() and t.data_ptr() % 64 == 0 else t.contiguous().clone() for t in tensors
    )
