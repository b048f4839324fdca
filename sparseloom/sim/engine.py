"""The discrete-event loop: one SoC, one policy, one set of arrivals.

Things and happenings are kept apart. The state is plain data
(:class:`SimState`, per-processor lists, the memory table); the happenings are
the event kinds below, each handled by one function that says what it changes
and which events it schedules next. The loop holds a policy and never looks at
its name; it calls the policy's ``decide`` (per request), ``schedule`` (global queue),
``recalibrate`` (closed loop), and ``switch`` then ``replan`` on an SLO change, in the
order the runtime calls them too (:mod:`sparseloom.core.slo`).

Events (heap entries are plain tuples ``(time_ms, seq, kind, payload)`` so the
hot loop makes no objects per event):

========== ======================================= ===============================================
kind        changes                                 schedules
========== ======================================= ===============================================
arrival     asks the policy for a route; pins SLO   block ready (first block, no transfer);
            in force at arrival                     nothing when admission sheds it
ready       block enters its processor's queue      block start (now, if the processor is free)
            (after a transfer, if any)
start       processor busy; the block is pinned     load (block not resident) or finish
            in memory
load        storage channel busy; memory reserved   start of the block(s) waiting for it
            (LRU blocks evicted to make room)
finish      processor free; block unpinned          ready of the next block (after a transfer when
                                                    the processor changes), or request completion;
                                                    start of the next queued block
slo_change  task SLO; the policy's switch serves     loads of the switched plan's resident set;
            at once (if it has one); it re-plans    plan ready, after the re-plan's modelled solve
                                                    time
plan_ready  the new plan serves (unless the SLOs    loads of the new plan's resident set
            changed again since)
========== ======================================= ===============================================

Each kind is one :class:`Event` with one handler in :func:`run` (``on_arrival``, ``ready``,
``on_finish``, ``on_load``, ``on_slo_change``, ``on_plan_ready``); block states are
:class:`BlockState`, and the run's totals one small counters object.

Arrivals are pre-generated and merged, so they are read from a sorted array
instead of going through the heap; start, eviction and re-plan happen at the
instant of another event and are not heap entries.

Modelling choices:

- Processors are non-preemptive queues served in the order the policy declares
  (``Policy.order``): earliest deadline first (arrival + the SLO in force at
  arrival; ties by arrival) or first come, first served. A block whose weights
  are not resident holds its processor while they load (head-of-line blocking).
- Memory holds whole blocks; the budget counts resident blocks and blocks
  being loaded. Loads run one at a time on one storage channel at
  ``Problem.storage_mb_per_ms``. A dispatched request's missing blocks start
  loading at once, in route order (the differential set of a task switch),
  as far as memory allows without evicting a block that a dispatched request
  still needs; a block still missing when its processor takes it is loaded
  then (a demand load). Eviction takes the least recently used block that no
  processor holds: first blocks no dispatched request needs, then (demand
  loads only) the others. The runtime decides admission, prefetch, late drops,
  eviction and SLO changes with the same functions (:mod:`sparseloom.core`). The plan's resident set is loaded at the start and
  pinned while the whole set fits in the budget (evicted only as a last
  resort); its preload list is loaded after it as far as free memory allows.
- A transfer of ``TaskSpec.output_mb`` costs ``Problem.transfer_ms`` when two
  consecutive blocks run on different processors; it is a delay, not a shared
  resource.
- Block latency is ``Block.latency_ms[processor]`` (:class:`scheduler.problem.Block`) and delivered accuracy is
  ``TaskSpec.accuracy(options)``: the engine trusts the problem's numbers,
  not what a route claims about itself.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

from scheduler.feedback import Feedback
from scheduler.plan import Plan, Route
from scheduler.policy import Job, Policy, check_order
from scheduler.problem import Problem, TaskSpec
from sparseloom.core.decisions import Decisions
from sparseloom.core.dispatch import admission_for, arrive, assign, late
from sparseloom.core.dispatch import prefetch as prefetch_blocks
from sparseloom.core.eviction import victims
from sparseloom.core.expected import expected, placed_ms
from sparseloom.core.metrics import RawRun, ScheduleLog, VariantSwitches
from sparseloom.core.overload import Overload
from sparseloom.core.residency import plan_loads
from sparseloom.core.slo import Replans, SLOChangeEvent, retarget
from sparseloom.sim.wake import Wake



class Event(IntEnum):
    """What happens at an instant: the kinds of the heap's entries (arrivals come from their own array)."""

    ARRIVAL = 0
    READY = 1
    FINISH = 2
    LOAD = 3
    SLO_CHANGE = 4
    PLAN_READY = 5


class BlockState(IntEnum):
    """Where a block's weights are."""

    ABSENT = 0
    LOADING = 1
    RESIDENT = 2


# Bound as plain module names: the hot loop compares against them millions of times.
ARRIVAL, READY, FINISH, LOAD, SLO_CHANGE, PLAN_READY = Event
ABSENT, LOADING, RESIDENT = BlockState


class _Counters:
    """The run's running totals, updated by the handlers (a slotted object: cheap attribute updates)."""

    __slots__ = ("evictions", "load_ms", "loads", "memory_area_mb_ms", "memory_last_ms", "memory_peak_mb", "task_switches")

    def __init__(self) -> None:
        self.memory_peak_mb = 0.0
        self.memory_area_mb_ms = 0.0
        self.memory_last_ms = 0.0
        self.loads = 0
        self.load_ms = 0.0
        self.evictions = 0
        self.task_switches = 0

# A compiled block step: (processor index, profiled latency_ms, block id, transfer_ms before it,
# expected latency_ms: what queues, sheds and drops go by, sparseloom.core.expected).
Step = tuple[int, float, int, float, float]


class BlockOverBudget(ValueError):
    """A route needs a block larger than the whole memory budget: it can never run."""


@dataclass(frozen=True)
class CompiledRoute:
    """A route turned into engine numbers once, then reused for every request that takes it."""

    task_index: int
    steps: tuple[Step, ...]
    # The route's distinct block ids in run order.
    blocks: tuple[int, ...]
    accuracy: float | None
    # Per position: the expected time from that block's start to the request's end (later
    # transfers included), what a request still needs when a processor takes that block
    # (sparseloom.core.expected).
    left_ms: tuple[float, ...] = ()
    # The stitched variant: the option index per position.
    options: tuple[int, ...] = ()


@dataclass
class SimState:
    """Everything the loop changes, as plain data (lists indexed by processor / block / request)."""

    now_ms: float
    processors: tuple[str, ...]
    busy: list[bool]
    busy_until_ms: list[float]
    queued_ms: list[float]
    # Per processor, a heap of (key, request): the deadline, or the order of joining (FIFO).
    queues: list[list[tuple[float, int]]]
    block_digests: list[str]
    block_mb: list[float]
    block_state: list[BlockState]
    block_pins: list[int]
    lru: OrderedDict[int, None]
    plan_pinned: set[int]
    memory_used_mb: float
    storage_free_ms: float


class _View:
    """The :class:`scheduler.policy.QueueView` a policy reads while deciding."""

    __slots__ = ("_block_ids", "_busy_until", "_proc", "_queued", "_s", "_state", "memo")

    def __init__(self, state: SimState, block_ids: dict[str, int]) -> None:
        self._s = state
        self._block_ids = block_ids
        # The state's lists are never rebound, so the view can hold them directly.
        self._proc = {name: i for i, name in enumerate(state.processors)}
        self._busy_until = state.busy_until_ms
        self._queued = state.queued_ms
        self._state = state.block_state
        self.memo: dict[str, object] = {}

    @property
    def now_ms(self) -> float:
        return self._s.now_ms

    def backlog_ms(self, processor: str) -> float:
        p = self._proc[processor]
        wait = self._busy_until[p] - self._s.now_ms
        return (wait if wait > 0.0 else 0.0) + self._queued[p]

    def is_resident(self, digest: str) -> bool:
        b = self._block_ids.get(digest)
        return b is not None and self._state[b] == RESIDENT


def block_ids(problem: Problem) -> dict[str, int]:
    """The engine's id of each block digest (first appearance over tasks, positions, options)."""
    return _block_table(problem)[0]


def _block_table(problem: Problem) -> tuple[dict[str, int], list[str], list[float]]:
    ids: dict[str, int] = {}
    digests: list[str] = []
    mbs: list[float] = []
    for task in problem.tasks:
        for options in task.positions:
            for opt in options:
                if opt.digest not in ids:
                    ids[opt.digest] = len(digests)
                    digests.append(opt.digest)
                    mbs.append(opt.memory_mb)
    return ids, digests, mbs


def compile_route(
    problem: Problem,
    route: Route,
    block_ids: dict[str, int],
    proc_index: dict[str, int],
) -> CompiledRoute:
    """Check a route against the problem and turn it into engine steps; ValueError if it cannot run."""
    for ti, task in enumerate(problem.tasks):
        if task.name == route.task:
            break
    else:
        raise ValueError(f"route for unknown task '{route.task}'")
    n = len(task.positions)
    if len(route.options) != n or len(route.processors) != n:
        raise ValueError(
            f"route for task '{task.name}' has {len(route.options)} options and "
            f"{len(route.processors)} processors; the task has {n} positions"
        )
    for pos, (oi, proc) in enumerate(zip(route.options, route.processors)):
        if not 0 <= oi < len(task.positions[pos]):
            raise ValueError(f"task '{task.name}' position {pos}: no option {oi}")
        opt = task.positions[pos][oi]
        if proc not in proc_index:
            raise ValueError(
                f"task '{task.name}' position {pos}: unknown processor '{proc}'"
            )
        if proc not in opt.latency_ms:
            raise ValueError(
                f"task '{task.name}' position {pos}: block {opt.variant} cannot run on '{proc}' (no latency)"
            )
        if opt.memory_mb > problem.memory_budget_mb:
            raise BlockOverBudget(
                f"task '{task.name}' position {pos}: block {opt.variant} needs {opt.memory_mb:g} MB, "
                f"more than the memory budget ({problem.memory_budget_mb:g} MB)"
            )
    exp = expected(problem, route)
    steps: list[Step] = []
    for pos, (oi, proc) in enumerate(zip(route.options, route.processors)):
        opt = task.positions[pos][oi]
        steps.append((proc_index[proc], float(opt.latency_ms[proc]), block_ids[opt.digest], exp.transfer_ms[pos],
                      exp.block_ms[pos]))
    blocks = tuple(dict.fromkeys(step[2] for step in steps))
    return CompiledRoute(
        ti, tuple(steps), blocks, task.accuracy(route.options), exp.left_ms, tuple(route.options)
    )


def run(
    problem: Problem,
    policy: Policy,
    plan: Plan,
    arrival_ms: Sequence[float] | np.ndarray,
    arrival_task: Sequence[int] | np.ndarray,
    *,
    duration_ms: float,
    warmup_ms: float = 0.0,
    slo_changes: Sequence[SLOChangeEvent] = (),
    drain_ms: float | None = None,
    trace_until_ms: float = 0.0,
    prefetch: bool = True,
    latency_cv: float = 0.0,
    latency_rng: np.random.Generator | None = None,
    replan_delay_ms: Callable[[Plan], float] | None = None,
    truth_scale: float = 1.0,
    block_error: Sequence[float] | None = None,
    decisions: Decisions | None = None,
    wake: Sequence[Wake | None] = (),
    wake_rng: np.random.Generator | None = None,
    overload: Overload | None = None,
) -> RawRun:
    """Simulate one run; ``arrival_ms`` must be sorted and ``arrival_task`` index ``problem.tasks``.

    Arrivals stop at ``duration_ms``; the loop then drains until
    ``duration_ms + drain_ms`` (default: the largest latency SLO, at least
    1 s). A request still unfinished then has certainly missed its SLO and is
    reported with an infinite latency.

    With ``prefetch`` (the default) a request's missing blocks start loading
    when it is dispatched (the differential set of a task switch), so loads
    overlap with its earlier blocks' execution; without it each block loads
    only when it reaches the head of its processor's queue.

    ``latency_cv`` > 0 makes every block execution's latency the profile's
    value times a lognormal factor of mean 1 and that coefficient of
    variation, drawn from ``latency_rng``; 0 (the default) keeps the
    profile's latency exactly.

    ``truth_scale`` and ``block_error`` make the truth differ from the profile the policies plan
    on (the profile-error axis): every execution takes the profile's latency x ``truth_scale``
    x ``block_error[block id]`` (ids in the order of the problem's options, see
    :func:`block_ids`); policies still see the profile's latency.

    On an SLO change the policy's ``switch`` (if it returns a plan) serves at once, as in the
    runtime; then the policy re-plans (``policy.replan(problem, plan)``, on the plan in force); the
    new plan serves ``replan_delay_ms(new_plan)`` later (default 0), unless another SLO change
    came meanwhile, and the plan in force serves until then. A policy
    that declares ``closed_loop`` is shown the latencies observed so far (a
    :class:`scheduler.feedback.Feedback`, per block x processor) at the first arrival FEEDBACK_EVERY_MS
    after the last showing, while no re-plan is pending (:meth:`sparseloom.core.slo.Replans.feedback_due`); the plan ``policy.recalibrate`` returns, if any, is installed the same way.

    ``policy.queue == "global"`` (Band): requests wait in one queue, in order; whenever a request
    arrives or a processor frees, ``policy.schedule`` hands the next block(s) of queued requests
    to idle processors or drops them. A request's remaining blocks rejoin the tail of the queue
    after each assignment (Band's follow-up jobs); a move between processors costs the transfer
    as time on the receiving processor. ``policy.drop_late``: a request whose deadline has passed
    when a processor would take its next block is dropped instead (global queue); with
    per-processor queues, a request that can no longer finish by its deadline even if its
    remaining blocks run at once (expected latencies and transfers) is dropped when its next
    block would start.

    ``decisions``, when given, records each request's route and every load and eviction, in order
    (to compare the run with the runtime's on the same scenario).

    ``wake``, per task (indexed as ``problem.tasks``; empty or None for none): the runtime's cost
    beyond the profile of a request's first block, by the time its processor sat idle before taking
    it and whether the processor's previous block was the same task's
    (:class:`sparseloom.sim.wake.Wake`); each charge is drawn at a uniform level from ``wake_rng``
    (the median when None). Policies still see the profile's latency. The start cost is drawn when
    the processor takes the first block, before the late check there, as the runtime's worker picks
    a request up (wakes, finishes its last one) before it checks it.

    ``overload``: the runtime's limits at arrival (:class:`sparseloom.core.overload.Overload`: requests
    in flight, expected finish against the SLO); a request refused is shed, as by admission. None
    (the default) for none.
    """
    if latency_cv < 0:
        raise ValueError(f"latency_cv must be >= 0, got {latency_cv}")
    if not truth_scale > 0:
        raise ValueError(f"truth_scale must be > 0, got {truth_scale}")
    if latency_cv > 0 and latency_rng is None:
        raise ValueError("latency_cv > 0 needs a latency_rng")
    if wake and len(wake) != len(problem.tasks):
        raise ValueError(f"wake needs one curve (or None) per task, got {len(wake)} for {len(problem.tasks)} tasks")
    task_names = tuple(t.name for t in problem.tasks)
    processors = tuple(p.name for p in problem.processors)
    proc_index = {name: i for i, name in enumerate(processors)}
    block_ids, digests, block_mb = _block_table(problem)
    nproc, nblock = len(processors), len(digests)
    budget = problem.memory_budget_mb
    storage_rate = problem.storage_mb_per_ms

    st = SimState(
        now_ms=0.0,
        processors=processors,
        busy=[False] * nproc,
        busy_until_ms=[0.0] * nproc,
        queued_ms=[0.0] * nproc,
        queues=[[] for _ in range(nproc)],
        block_digests=digests,
        block_mb=block_mb,
        block_state=[ABSENT] * nblock,
        block_pins=[0] * nblock,
        lru=OrderedDict(),
        plan_pinned=set(),
        memory_used_mb=0.0,
        storage_free_ms=0.0,
    )
    view = _View(st, block_ids)
    tasks_now = list(problem.tasks)
    slo_lat = [t.latency_slo_ms for t in problem.tasks]
    slo_acc = [t.min_accuracy for t in problem.tasks]
    max_slo = max([*slo_lat, *(c.latency_ms or 0.0 for c in slo_changes), 1000.0])
    t_end = duration_ms + (max_slo if drain_ms is None else drain_ms)

    # Per-request arrays, indexed by arrival order.
    arr_t = [float(x) for x in arrival_ms]
    arr_k = [int(x) for x in arrival_task]
    n_req = len(arr_t)
    req_steps: list[tuple[Step, ...]] = [()] * n_req
    req_left: list[tuple[float, ...]] = [()] * n_req
    req_pos = [0] * n_req
    done = [float("inf")] * n_req
    req_slo = [0.0] * n_req
    req_acc: list[float | None] = [None] * n_req
    req_acc_bad = [False] * n_req
    req_shed = [False] * n_req
    decision_ns: list[int] = []
    replan_ns: list[int] = []
    drop_late = bool(policy.drop_late)
    global_queue = policy.queue == "global"
    shedding = admission_for(policy, problem)
    by_deadline = check_order(policy)
    joined = itertools.count()  # FIFO keys: the order blocks join their queue
    window = max(1, int(policy.window))
    gq: list[int] = []  # requests waiting in the global queue, in order
    req_route: list[Route | None] = [None] * n_req
    req_prev = [-1] * n_req  # processor of the request's previous block (global queue)
    run_left = [0] * n_req  # blocks still to run back to back on the same processor (global queue)
    pending_plans: list[tuple[Plan, int]] = []  # (plan, the SLO generation it was made for)
    replans = Replans()
    closed_loop = bool(policy.closed_loop)
    # Per (block id x processor): executions, and their expected and observed latency sums.
    fb_n = [0] * (nblock * nproc)
    fb_expected = [0.0] * (nblock * nproc)
    fb_observed = [0.0] * (nblock * nproc)
    opt_block = [[[block_ids[opt.digest] for opt in pos] for pos in t.positions] for t in problem.tasks]

    # Per-processor waiting state: the request whose block waits for a load, or -1.
    waiting_req = [-1] * nproc
    load_waiters: list[list[int]] = [[] for _ in range(nblock)]
    mem_waiters: list[int] = []  # processors waiting for memory room
    wanted = [0] * nblock  # block steps of dispatched requests not yet run
    in_flight = [0]  # admitted requests not yet finished or dropped
    busy_ms = [0.0] * nproc
    last_task = [-1] * nproc
    variants = VariantSwitches(len(task_names))
    variant_now = variants.last

    heap: list[tuple[float, int, int, int]] = []
    counter = itertools.count()
    push = heapq.heappush
    pop = heapq.heappop
    perf = time.perf_counter_ns

    log: ScheduleLog | None = None
    if trace_until_ms > 0:
        log = ScheduleLog(
            trace_until_ms, processors, task_names, tuple(digests), request_task=arr_k
        )

    cache_by_id: dict[int, tuple[Route, CompiledRoute]] = {}
    cache_by_key: dict[tuple[str, tuple[int, ...], tuple[str, ...]], CompiledRoute] = {}

    # The state's lists, bound to locals: the hot loop reads them millions of times.
    busy, busy_until, queued, queues = (
        st.busy,
        st.busy_until_ms,
        st.queued_ms,
        st.queues,
    )
    block_state, block_pins, lru = st.block_state, st.block_pins, st.lru
    # The blocks whose state is ABSENT, kept beside block_state: a dispatch's prefetch asks it per
    # block (a set lookup, no call into Python), and skips the asking when every block is in.
    absent_blocks = set(range(nblock))
    lru_touch = lru.move_to_end
    noisy = latency_cv > 0
    truth = [truth_scale * (1.0 if block_error is None else float(block_error[b])) for b in range(nblock)]
    exact = all(f == 1.0 for f in truth)
    sigma = float(np.sqrt(np.log1p(latency_cv**2)))
    noise: list[float] = []
    wake_by_task = list(wake) if wake and any(w is not None for w in wake) else None
    idle_since = [0.0] * nproc  # when each processor last finished a block (truth)
    woke_after = [0.0] * nproc  # how long it had idled when it took its current block
    req_gap = [0.0] * n_req if wake_by_task is not None else []  # that idle gap at each request's first block
    levels: list[float] = []
    # A request's start cost, drawn when its first block is taken (before the late check); NaN: none yet.
    req_start = [math.nan] * n_req if wake_by_task is not None else []

    def wake_level() -> float:
        if wake_rng is None:
            return 0.5
        if not levels:
            levels.extend(wake_rng.random(65536).tolist())
        return levels.pop()

    def start_cost(w: Wake, k: int, p: int, gap: float) -> float:
        """A draw of task ``k``'s start cost on processor ``p`` after ``gap`` ms idle (warm when ``p``
        last ran ``k``)."""
        return w.curve(last_task[p] == k).cost(gap, wake_level())

    def noise_factor() -> float:
        # Drawn in chunks: one numpy call per 64k executions, not one per execution.
        if not noise:
            assert latency_rng is not None
            noise.extend(
                latency_rng.lognormal(-sigma * sigma / 2.0, sigma, 65536).tolist()
            )
        return noise.pop()

    log_until = log.until_ms if log is not None else float("-inf")
    log_executions = log.executions if log is not None else []
    executions = 0

    acc = _Counters()

    def clip(t: float) -> float:
        return warmup_ms if t < warmup_ms else (min(t, duration_ms))

    def memory_changed(now: float, delta: float) -> None:
        acc.memory_area_mb_ms += st.memory_used_mb * (clip(now) - clip(acc.memory_last_ms))
        acc.memory_last_ms = now
        st.memory_used_mb += delta
        acc.memory_peak_mb = max(acc.memory_peak_mb, st.memory_used_mb)

    def compiled(route: Route) -> CompiledRoute:
        hit = cache_by_id.get(id(route))
        if hit is not None and hit[0] is route:
            return hit[1]
        key = (route.task, route.options, route.processors)
        cr = cache_by_key.get(key)
        if cr is None:
            cr = compile_route(problem, route, block_ids, proc_index)
            cache_by_key[key] = cr
        # Policies that build fresh Route objects fall back to the key cache.
        if len(cache_by_id) < 4096:
            cache_by_id[id(route)] = (route, cr)
        return cr

    def make_room(need: float, now: float, demand: bool) -> bool:
        """Evict idle resident blocks until ``need`` MB fit (the shared rule,
        :func:`sparseloom.core.eviction.victims`); False, evicting nothing, when they cannot."""
        free = budget - st.memory_used_mb
        if need <= free + 1e-9:
            return True
        idle = [b for b in lru if block_pins[b] == 0 and block_state[b] == RESIDENT]
        chosen = victims(idle, need, free, block_mb, wanted, st.plan_pinned, demand)
        if chosen is None:
            return False
        for b in chosen:
            del lru[b]
            block_state[b] = ABSENT
            absent_blocks.add(b)
            acc.evictions += 1
            memory_changed(now, -block_mb[b])
            if decisions is not None:
                decisions.evictions.append(digests[b])
            if log is not None and now < log.until_ms:
                log.evictions.append((b, now))
        return True

    def start_load(b: int, now: float, demand: bool = True) -> bool:
        """Reserve memory and queue block ``b`` on the storage channel; schedules its load event."""
        mb = block_mb[b]
        if not make_room(mb, now, demand):
            return False
        block_state[b] = LOADING
        absent_blocks.discard(b)
        lru[b] = None
        memory_changed(now, mb)
        if decisions is not None:
            decisions.loads.append(digests[b])
        begin = max(st.storage_free_ms, now)
        end = begin + mb / storage_rate
        st.storage_free_ms = end
        acc.loads += 1
        acc.load_ms += clip(end) - clip(begin)
        if log is not None and begin < log.until_ms:
            log.loads.append((b, begin, end - begin))
        push(heap, (end, next(counter), LOAD, b))
        return True

    def execute(p: int, r: int, step: Step, now: float) -> None:
        """Block start: the processor runs the request's current block (``step``) from ``now``."""
        _, profiled, b, _, expect = step
        lat = profiled * noise_factor() if noisy else profiled
        if not exact:
            lat *= truth[b]
        if closed_loop:
            # What the runtime's feedback sees: the block's own run time, without the wake-up cost.
            i = b * nproc + p
            fb_n[i] += 1
            fb_expected[i] += profiled
            fb_observed[i] += lat
        if wake_by_task is not None:
            k = arr_k[r]
            w = wake_by_task[k]
            if w is not None:
                # The start cost on the first block, the finish cost on the last (see sim.wake).
                pos = req_pos[r]
                if pos == 0:
                    req_gap[r] = woke_after[p]
                    c = req_start[r]  # drawn at the check, or NaN where the policy does not check
                    lat += start_cost(w, k, p, woke_after[p]) if math.isnan(c) else c
                if w.finish is not None and pos == len(req_steps[r]) - 1:
                    lat += w.finish.cost(req_gap[r], wake_level())
                lat = max(0.0, lat)
        end = now + lat
        idle_since[p] = end
        # Policies see the expected finish (sparseloom.core.expected), not the drawn one.
        busy_until[p] = now + expect
        lru_touch(b)
        push(heap, (end, next(counter), FINISH, r))
        k = arr_k[r]
        if warmup_ms <= now and end <= duration_ms:
            busy_ms[p] += lat
            if last_task[p] != k and last_task[p] >= 0:
                acc.task_switches += 1
        else:
            busy_ms[p] += clip(end) - clip(now)
        last_task[p] = k
        if now < log_until:
            log_executions.append((p, r, req_pos[r], b, now, lat))

    def take(p: int, r: int, step: Step, now: float) -> None:
        """The processor takes the request's block: run it now, or hold the processor while it loads."""
        b = step[2]
        busy[p] = True
        woke_after[p] = now - idle_since[p]
        block_pins[b] += 1
        state = block_state[b]
        if state == RESIDENT:
            execute(p, r, step, now)
            return
        waiting_req[p] = r
        if state == LOADING or start_load(b, now):
            load_waiters[b].append(p)
            est = st.storage_free_ms
        else:
            mem_waiters.append(p)
            est = max(now, st.storage_free_ms) + block_mb[b] / storage_rate
        busy_until[p] = est + step[4]

    def prefetch_one(b: int) -> bool:
        return start_load(b, st.now_ms, demand=False)

    def retry_memory(now: float) -> None:
        """Memory may have room again: start the loads that processors wait for, in FIFO order."""
        while mem_waiters:
            q = mem_waiters[0]
            rq = waiting_req[q]
            bq = req_steps[rq][req_pos[rq]][2]
            if block_state[bq] == ABSENT and not start_load(bq, now):
                return
            mem_waiters.pop(0)
            if block_state[bq] == RESIDENT:
                waiting_req[q] = -1
                execute(q, rq, req_steps[rq][req_pos[rq]], now)
            else:
                load_waiters[bq].append(q)

    def picked_up(r: int, p: int, now: float) -> float:
        """When processor ``p``, taking request ``r``'s block at ``now``, gets to check it: after the
        start cost (drawn here, charged by execute) at its first block, at once at the others. A
        request dropped there does not hold the processor for its pick-up (a wake-up, not work)."""
        if req_pos[r] == 0:
            assert wake_by_task is not None
            w = wake_by_task[arr_k[r]]
            if w is not None:
                c = req_start[r] = start_cost(w, arr_k[r], p, now - idle_since[p])
                return now + max(0.0, c)
        return now

    def ready(r: int, now: float) -> None:
        """Block ready: it joins its processor's queue (and starts if the processor is free)."""
        step = req_steps[r][req_pos[r]]
        p = step[0]
        if not busy[p] and not queues[p]:
            if drop_late and late(picked_up(r, p, now) if req_start else now, req_left[r][req_pos[r]],
                                  arr_t[r] + req_slo[r]):
                drop(r)
                return
            take(p, r, step, now)
        else:
            # core.dispatch.queue_key, written out: (key, r) is that key, r the arrival order.
            push(queues[p], (arr_t[r] + req_slo[r] if by_deadline else float(next(joined)), r))
            queued[p] += step[4]

    def drop(r: int) -> None:
        """The request will not run on (it stays unfinished: metrics count it as dropped); its blocks
        still to come are no longer wanted."""
        in_flight[0] -= 1
        for step in req_steps[r][req_pos[r]:]:
            wanted[step[2]] -= 1

    def next_live(q: list[tuple[float, int]], p: int, now: float) -> int:
        """The next request of processor ``p``'s queue to run, dropping late ones when the policy does."""
        while q:
            r2 = pop(q)[1]
            queued[p] -= req_steps[r2][req_pos[r2]][4]
            if drop_late and late(picked_up(r2, p, now) if req_start else now, req_left[r2][req_pos[r2]],
                                  arr_t[r2] + req_slo[r2]):
                drop(r2)
                continue
            return r2
        return -1

    def global_step(r: int, p: int) -> Step:
        """The step of request ``r``'s next block on processor ``p``, with the move there if any."""
        k = arr_k[r]
        route = req_route[r]
        assert route is not None
        pos = req_pos[r]
        o = route.options[pos]
        prev = processors[req_prev[r]] if req_prev[r] >= 0 else None
        ms = placed_ms(problem, problem.tasks[k], pos, o, prev, processors[p])
        return (p, ms, opt_block[k][pos][o], 0.0, ms)

    def schedule_global(now: float) -> None:
        """Ask the policy which queued requests run next where (Band's ``Schedule(JobQueue&)``)."""
        if not gq:
            return
        idle = frozenset(processors[p] for p in range(nproc) if not busy[p])
        if not idle:
            return
        head = gq[:window]
        jobs = [Job(r, task_names[arr_k[r]], req_route[r], req_pos[r], arr_t[r],  # type: ignore[arg-type]
                    arr_t[r] + req_slo[r], processors[req_prev[r]] if req_prev[r] >= 0 else None) for r in head]
        gone: set[int] = set()
        for i, proc, count in assign(policy, jobs, idle, plan, view, now):
            r = head[i]
            gone.add(i)
            if proc is None:
                drop(r)
                continue
            p = proc_index[proc]
            run_left[r] = count - 1
            step = global_step(r, p)
            req_steps[r] = (*req_steps[r][: req_pos[r]], step, *req_steps[r][req_pos[r] + 1:])
            if decisions is not None:
                decisions.assignments.append((task_names[arr_k[r]], req_pos[r], proc))
            take(p, r, step, now)
        if gone:
            gq[: len(head)] = [r for i, r in enumerate(head) if i not in gone]

    def serve_later(new_plan: Plan, now: float, wall_ns: int) -> None:
        """A re-plan was made at ``now``: it serves once its modelled solve time has passed (unless the
        SLOs change again meanwhile)."""
        replan_ns.append(wall_ns)
        if log is not None and now < log.until_ms:
            log.replans.append((now, wall_ns / 1000.0))
        pending_plans.append((new_plan, replans.generation))
        replans.in_flight += 1
        delay = replan_delay_ms(new_plan) if replan_delay_ms is not None else 0.0
        push(heap, (now + max(0.0, delay), next(counter), PLAN_READY, len(pending_plans) - 1))

    def feedback(now: float) -> None:
        """Show a closed-loop policy what it observed so far; install the plan it asks for."""
        fb = Feedback()
        for i, n in enumerate(fb_n):
            if n:
                fb.add(digests[i // nproc], processors[i % nproc], fb_expected[i], fb_observed[i], n)
        t0 = perf()
        new_plan = policy.recalibrate(replace(problem, tasks=tuple(tasks_now)), plan, fb)
        if new_plan is not None:
            serve_later(new_plan, now, perf() - t0)

    def load_residency(new_plan: Plan, now: float) -> None:
        """Pin the plan's resident set when it fits, then load the blocks it asks for as room allows
        (:func:`sparseloom.core.residency.plan_loads`)."""
        resident = [block_ids[d] for d in new_plan.resident if d in block_ids]
        total = sum(block_mb[b] for b in resident)
        st.plan_pinned = set(resident) if total <= budget + 1e-9 else set()
        for d, _ in plan_loads(problem, new_plan):
            b = block_ids.get(d)
            # Best effort: a load that does not fit is skipped.
            if b is not None and block_state[b] == ABSENT:
                start_load(b, now, demand=False)

    load_residency(plan, 0.0)
    for i, ch in enumerate(sorted(slo_changes, key=lambda c: c.at_ms)):
        if ch.task not in task_names:
            raise ValueError(f"SLO change for unknown task '{ch.task}'")
        push(heap, (ch.at_ms, next(counter), SLO_CHANGE, i))
    changes = sorted(slo_changes, key=lambda c: c.at_ms)

    def on_finish(r: int, now: float) -> None:
        """A block finished: its processor is free and the block unpinned; the request's next block
        becomes ready (after a transfer) or the request is done; the processor takes its next job."""
        nonlocal executions
        executions += 1
        steps = req_steps[r]
        pos = req_pos[r]
        p, _, b, _, _ = steps[pos]
        busy[p] = False
        block_pins[b] -= 1
        wanted[b] -= 1
        if mem_waiters and block_pins[b] == 0:
            retry_memory(now)
        pos += 1
        if pos == len(steps):
            done[r] = now
            in_flight[0] -= 1
        elif global_queue:
            req_pos[r] = pos
            req_prev[r] = p
            if run_left[r] > 0:
                # The rest of the assigned subgraph runs on at once, on the same processor: one
                # invocation in Band, so the scheduler is not asked in between.
                run_left[r] -= 1
                step = global_step(r, p)
                req_steps[r] = (*steps[:pos], step, *steps[pos + 1:])
                if decisions is not None:
                    decisions.assignments.append((task_names[arr_k[r]], pos, processors[p]))
                take(p, r, step, now)
                return
            gq.append(r)
        else:
            req_pos[r] = pos
            xfer = steps[pos][3]
            if xfer > 0.0:
                push(heap, (now + xfer, next(counter), READY, r))
            else:
                ready(r, now)
        if global_queue:
            schedule_global(now)
            return
        q = queues[p]
        if q and not busy[p]:
            r2 = next_live(q, p, now)
            if r2 >= 0:
                take(p, r2, req_steps[r2][req_pos[r2]], now)

    def on_arrival(r: int, now: float) -> None:
        """A request arrives: the policy routes it (admission may shed it); its blocks are wanted and
        prefetched; its first block becomes ready (or it joins the global queue)."""
        k = arr_k[r]
        if closed_loop and replans.feedback_due(now):
            feedback(now)
        route, admitted, ns = arrive(policy, shedding, task_names[k], plan, view, now)
        decision_ns.append(ns)
        if decisions is not None:
            decisions.routes.append((route.task, tuple(route.options), tuple(route.processors)) if admitted else None)
        hit = cache_by_id.get(id(route))  # compiled()'s fast path, without the call
        cr = hit[1] if hit is not None and hit[0] is route else compiled(route)
        if cr.task_index != k:
            raise ValueError(
                f"policy returned a route for '{route.task}' to a request of '{task_names[k]}'"
            )
        if overload is not None and overload.refusal(
            in_flight[0], admitted, slo_lat[k], ((processors[s[0]], s[4]) for s in cr.steps), view
        ) is not None:
            admitted = False
        if not admitted:
            req_slo[r] = slo_lat[k]
            req_shed[r] = True
            return  # shed at arrival: never runs, counted as dropped
        in_flight[0] += 1
        req_steps[r] = cr.steps
        req_left[r] = cr.left_ms
        if cr.options != variant_now[k]:  # the common case, no change, without a call
            variants.see(k, cr.options, now)
        req_slo[r] = slo_lat[k]
        req_acc[r] = cr.accuracy
        req_acc_bad[r] = (
            cr.accuracy is not None and cr.accuracy < slo_acc[k] - 1e-12
        )
        for step in cr.steps:
            wanted[step[2]] += 1
        if prefetch and absent_blocks:
            prefetch_blocks(cr.blocks, absent_blocks.__contains__, prefetch_one)
        if global_queue:
            req_route[r] = route
            gq.append(r)
            schedule_global(now)
            return
        first_xfer = cr.steps[0][3]
        if first_xfer > 0.0:
            push(heap, (now + first_xfer, next(counter), READY, r))
        else:
            ready(r, now)

    def on_load(b: int, now: float) -> None:
        """A block's load finished: it is resident; the processors waiting for it start it."""
        block_state[b] = RESIDENT
        waiters = load_waiters[b]
        load_waiters[b] = []
        for p in waiters:
            r = waiting_req[p]
            waiting_req[p] = -1
            execute(p, r, req_steps[r][req_pos[r]], now)
        if mem_waiters:
            retry_memory(now)

    def on_plan_ready(i: int, now: float) -> None:
        """A re-plan finished: its plan serves from now (the old one served meanwhile) unless made for
        SLOs changed since; its resident set loads."""
        nonlocal plan
        new_plan, generation = pending_plans[i]
        replans.in_flight -= 1
        if not replans.current(generation):
            return
        plan = new_plan
        load_residency(plan, now)
        if global_queue:
            schedule_global(now)

    def on_slo_change(i: int, now: float) -> None:
        """A task's SLO changes (:func:`sparseloom.core.slo.retarget`): requests arriving from now carry
        it; the policy's quick switch, if any, serves at once; its re-plan, made on the plan then in
        force, serves once its modelled solve time has passed."""
        nonlocal plan
        ch = changes[i]
        k = task_names.index(ch.task)
        change = retarget(policy, replace(problem, tasks=tuple(tasks_now)), ch, plan)
        tasks_now[k] = change.problem.tasks[k]
        slo_lat[k], slo_acc[k] = tasks_now[k].latency_slo_ms, tasks_now[k].min_accuracy
        replans.start()
        if change.switched is not None:
            replan_ns.append(change.switch_ns)
            plan = change.switched
            load_residency(plan, now)
            if global_queue:
                schedule_global(now)
        t0 = perf()
        new_plan = policy.replan(change.problem, plan)
        serve_later(new_plan, now, perf() - t0)

    by_kind: dict[Event, Callable[[int, float], None]] = {
        ARRIVAL: on_arrival, READY: ready, FINISH: on_finish, LOAD: on_load, SLO_CHANGE: on_slo_change,
        PLAN_READY: on_plan_ready,
    }
    handlers = tuple(by_kind[e] for e in Event)  # indexed by the event kind

    i_arr = 0
    next_arr = arr_t[0] if n_req else float("inf")
    while True:
        if heap and heap[0][0] <= next_arr:
            now, _, kind, a = pop(heap)
        elif i_arr < n_req:
            now, kind, a = next_arr, ARRIVAL, i_arr
            i_arr += 1
            next_arr = arr_t[i_arr] if i_arr < n_req else float("inf")
        else:
            break
        if now > t_end:
            break
        st.now_ms = now
        handlers[kind](a, now)

    memory_changed(max(st.now_ms, duration_ms), 0.0)
    return RawRun(
        task_names=task_names,
        processors=processors,
        arrival_ms=arr_t,
        arrival_task=arr_k,
        done_ms=done,
        latency_slo_ms=req_slo,
        accuracy=req_acc,
        accuracy_violated=req_acc_bad,
        decision_ns=decision_ns,
        replan_ns=replan_ns,
        busy_ms=busy_ms,
        memory_peak_mb=acc.memory_peak_mb,
        memory_area_mb_ms=acc.memory_area_mb_ms,
        loads=acc.loads,
        load_ms=acc.load_ms,
        evictions=acc.evictions,
        task_switches=acc.task_switches,
        block_executions=executions,
        schedule=log,
        variant_switch_ms=tuple(map(tuple, variants.at_ms)),
        shed=req_shed,
    )
