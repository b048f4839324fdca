"""Per-request decisions on the hot path: estimate finish times from live backlogs, pick a route.

These functions read only the plan and the queue view, allocate little, and call
``backlog_ms`` at most once per processor per decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from scheduler.plan import Plan, Route
from scheduler.policy import QueueView


def _wait(k: str, backlog: dict[str, float], state: QueueView) -> float:
    """Processor ``k``'s backlog, read from ``state`` once per decision and kept in ``backlog``."""
    b = backlog.get(k)
    if b is None:
        b = backlog[k] = state.backlog_ms(k)
    return b


def finish_ms(route: Route, backlog: dict[str, float], state: QueueView) -> float:
    """Expected completion (from now) of ``route`` if queued now: each block waits for its processor."""
    t = 0.0
    for k, s in zip(route.processors, route.step_latency_ms):
        t = max(t, _wait(k, backlog, state))
        t += s
    return t


def _resident(route: Route, state: QueueView) -> bool:
    for d in route.digests:
        if not state.is_resident(d):
            return False
    return True


def most_accurate_in_time(task: str, plan: Plan, state: QueueView,
                          backlog: dict[str, float] | None = None) -> Route:
    """The most accurate resident alternative expected to finish within the SLO, else the one
    expected to finish first; the planned route when no alternative is resident. ``backlog``:
    the backlogs this decision has already read."""
    planned = plan.routes[task]
    alts: Sequence[Route] = plan.alternatives.get(task) or (planned,)
    slo = plan.slo_ms.get(task, float("inf"))
    backlog = {} if backlog is None else backlog
    best: Route | None = None
    best_t = float("inf")
    # Alternatives are a Pareto front, fastest first, so the most accurate comes last.
    for r in reversed(alts):
        t = finish_ms(r, backlog, state)
        if t <= slo and _resident(r, state):
            return r
        if t < best_t and _resident(r, state):
            best, best_t = r, t
    return best if best is not None else planned


def planned_if_in_time(task: str, plan: Plan, state: QueueView) -> Route:
    """The planned route when it is expected to finish within the SLO, else the most accurate in time."""
    planned = plan.routes[task]
    backlog: dict[str, float] = {}
    if finish_ms(planned, backlog, state) <= plan.slo_ms.get(
        task, float("inf")
    ) and _resident(planned, state):
        return planned
    return most_accurate_in_time(task, plan, state, backlog)


def planned_or_placed(task: str, plan: Plan, state: QueueView, single_processor: bool = False) -> Route:
    """The planned variant: as planned when its processors are idle, else with its blocks placed for
    the least expected finish given the live backlogs (all on one processor with
    ``single_processor``: the non-partitioned baselines), if that is within the SLO; else the most
    accurate alternative in time."""
    planned = plan.routes[task]
    slo = plan.slo_ms.get(task, float("inf"))
    backlog: dict[str, float] = {}
    if _resident(planned, state):
        # Fast path (most requests): nothing queued on the planned processors, so run as planned.
        if all(_wait(k, backlog, state) <= 0.0 for k in planned.processors):
            return planned
        if single_processor:
            placed = place_whole(task, plan, state, backlog)
        else:
            placed = place_blocks(task, plan, state, backlog=backlog)
        if finish_ms(placed, backlog, state) <= slo:
            return placed
    return most_accurate_in_time(task, plan, state, backlog)


# "hold": a task that fell back from its planned variant stays on the fallback for at least this many
# of its latency SLOs (a burst that made the planned variant late lasts far longer than one SLO)...
HOLD_SLOS = 50.0
# ...and returns once the wait the planned variant would see on the live queues is at most this
# fraction of its slack (SLO - service): the other half left for the queue to grow again.
RETURN_AT = 0.5


def planned_or_held(task: str, plan: Plan, state: QueueView, single_processor: bool = False) -> Route:
    """:func:`planned_or_placed` with hysteresis: once a task falls back to another variant it keeps
    that variant while it is in time, and returns to the planned one only after HOLD_SLOS of its SLOs
    and when the planned variant would wait at most RETURN_AT of its slack. The hold lives in the
    run's ``state.memo``, so runs never share it; a new plan starts afresh."""
    slo = plan.slo_ms.get(task, float("inf"))
    now = state.now_ms
    held = state.memo.get(task)
    if isinstance(held, tuple) and held[2] is plan:
        route, since, _ = held
        if now - since >= HOLD_SLOS * slo:
            back = planned_or_placed(task, plan, state, single_processor)
            service = back.latency_ms
            calm = finish_ms(back, {}, state) <= service + RETURN_AT * (slo - service)
            if back.options == plan.routes[task].options and calm:
                del state.memo[task]
                return back
        if finish_ms(route, {}, state) <= slo and _resident(route, state):
            return route
    r = planned_or_placed(task, plan, state, single_processor)
    if r.options != plan.routes[task].options:
        state.memo[task] = (r, now, plan)
    else:
        state.memo.pop(task, None)
    return r


# Per-request dispatch rules every adaptive policy may use (see ``dispatch``).
RULES = ("place", "hold", "plan", "accuracy")


def dispatch(rule: str, task: str, plan: Plan, state: QueueView, single_processor: bool = False) -> Route:
    """One request's route by ``rule``: "place" (:func:`planned_or_placed`), "hold"
    (:func:`planned_or_held`), "plan" (:func:`planned_if_in_time`) or "accuracy"
    (:func:`most_accurate_in_time`)."""
    if rule == "place":
        return planned_or_placed(task, plan, state, single_processor)
    if rule == "hold":
        return planned_or_held(task, plan, state, single_processor)
    if rule == "plan":
        return planned_if_in_time(task, plan, state)
    return most_accurate_in_time(task, plan, state)


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"dispatch must be one of {', '.join(RULES)}, not {rule!r}")
    return rule


def place_whole(task: str, plan: Plan, state: QueueView, backlog: dict[str, float] | None = None) -> Route:
    """The planned blocks all on the one processor that finishes them first given the live backlogs
    (no partitioning: the paper's NP baselines move a whole variant, never split it)."""
    planned = plan.routes[task]
    blocks_ms = plan.block_latency_ms.get(task)
    if not blocks_ms:
        return planned
    seen: dict[str, float] = {} if backlog is None else backlog
    best_k, best_f = "", float("inf")
    for k in blocks_ms[0]:
        if not all(k in lat for lat in blocks_ms):
            continue
        w = _wait(k, seen, state)
        f = max(0.0, w) + sum(lat[k] for lat in blocks_ms)
        if f < best_f:
            best_k, best_f = k, f
    procs = (best_k,) * len(blocks_ms)
    if not best_k or procs == planned.processors:
        return planned
    return with_processors(planned, procs, blocks_ms, plan.block_transfer_ms[task])


def place_blocks(task: str, plan: Plan, state: QueueView, backlog: dict[str, float] | None = None) -> Route:
    """The planned blocks placed at request time for the least expected finish over all processor
    sequences (:func:`earliest_finish`). ``backlog``: the backlogs this decision has already read."""
    planned = plan.routes[task]
    blocks_ms = plan.block_latency_ms.get(task)
    if not blocks_ms:
        return planned
    moves = plan.block_transfer_ms[task]
    seen: dict[str, float] = {} if backlog is None else backlog
    procs, _ = earliest_finish(blocks_ms, moves, lambda k: _wait(k, seen, state))
    if procs == planned.processors:
        return planned
    return with_processors(planned, procs, blocks_ms, moves)


def earliest_finish(blocks_ms: Sequence[Mapping[str, float]], moves: Sequence[float], wait: Callable[[str], float],
                    start: int = 0, previous: str | None = None) -> tuple[tuple[str, ...], float]:
    """The processor for each of ``blocks_ms`` (a task's blocks from position ``start`` on) with the least
    expected finish from now, and that finish: an exact DP over positions (waiting is monotone in
    the ready time). ``wait(k)``: processor ``k``'s backlog; ``moves[p]``: the transfer after
    position ``p`` when the next block runs elsewhere; ``previous``: where block ``start - 1`` ran.
    Band's ``GetShortestLatencyWithUnitSubgraph`` and the "place" dispatch both use it."""
    # finish[k]: earliest finish with the current block on k; back[n][k]: the previous processor.
    # (Conditional expressions instead of max(): this loop runs on every request.)
    finish: dict[str, float] = {}
    back: list[dict[str, str]] = []
    first_move = moves[start - 1] if previous is not None and start > 0 else 0.0
    for n, lat in enumerate(blocks_ms):
        nxt: dict[str, float] = {}
        prev: dict[str, str] = {}
        move = moves[start + n - 1] if n else 0.0
        for k, ms in lat.items():
            w = wait(k)
            if w < 0.0:  # noqa: PLR1730 (hot loop: a comparison, not a max() call)
                w = 0.0
            if n == 0:
                ready = first_move if previous is not None and previous != k else 0.0
                nxt[k] = (w if w > ready else ready) + ms  # noqa: FURB136 (hot loop, see above)
                continue
            best_f, best_k = float("inf"), ""
            for kk, f_prev in finish.items():
                ready = f_prev + move if kk != k else f_prev
                f = (w if w > ready else ready) + ms  # noqa: FURB136 (hot loop, see above)
                if f < best_f:
                    best_f, best_k = f, kk
            if best_k:
                nxt[k], prev[k] = best_f, best_k
        finish = nxt
        back.append(prev)
    last = min(finish, key=finish.__getitem__)
    seq = [last]
    for n in range(len(blocks_ms) - 1, 0, -1):
        seq.append(back[n][seq[-1]])
    return tuple(reversed(seq)), finish[last]


def with_processors(
    route: Route,
    procs: tuple[str, ...],
    blocks_ms: Sequence[Mapping[str, float]],
    moves: Sequence[float],
) -> Route:
    last = len(procs) - 1
    steps = tuple(
        blocks_ms[p][k] + (moves[p] if p < last and procs[p + 1] != k else 0.0)
        for p, k in enumerate(procs)
    )
    return Route(
        task=route.task,
        options=route.options,
        processors=procs,
        latency_ms=sum(steps),
        accuracy=route.accuracy,
        memory_mb=route.memory_mb,
        variants=route.variants,
        digests=route.digests,
        step_latency_ms=steps,
    )
