"""Route arithmetic shared by every planner: evaluate a route, score a plan, list Pareto routes.

One place computes latency (blocks + transfers), accuracy (additive deltas),
memory (a digest counts once) and the planning objectives, so the ILP, the
brute-force check, the heuristics and the reports all agree on the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scheduler.plan import Route
from scheduler.problem import Problem, ProcessorInfo, TaskSpec

# Utilisation levels the queueing term is linearised over: 1/(1 - level) = 2, 4, 8, 16, so each
# step doubles the modelled wait, and rounding a utilisation up to its level overstates the wait
# by less than 2x; the processor's ceiling (ProcessorInfo.max_utilisation) is the last level.
UTILISATION_LEVELS = (0.5, 0.75, 0.875, 0.9375)
# The utilisation cap of the plain model (no queueing term). At 0.8 the M/D/1 mean wait is two mean
# services (rho / (2 (1 - rho))). benchmarks/load_model.py varies it: 0.7, 0.8 and 0.9 gave mean
# violations of 3.11, 3.12 and 3.12% over 4 cells x 6 policies, so the plans do not hinge on it
# once rates are the sustained ones (the online dispatch absorbs the rest).
FIXED_CAP = 0.8


@dataclass(frozen=True)
class LoadModel:
    """How plans count load: with the queueing term (each processor an M/G/1 queue whose
    Pollaczek-Khinchine mean wait counts in every latency, up to the processor's ceiling) or with a
    utilisation cap ``cap`` and no wait; at sustained rates (``TaskSpec.load_rate_hz``: a bursty
    task's on-state rate) or mean rates.

    The default, by measurement (``benchmarks/load_model.py``, 4 cells x 6 policies x 3 seeds,
    modelled): the cap at sustained rates, mean violations 3.12%, against 3.35% with the queueing
    term, 3.25% for the queueing term at mean rates and 3.15% for the cap at mean rates (the old
    planning; sparseloom on quickstart/Core Ultra 3.35% there against 0.45%). The queueing term
    cost 5-15x the solve time, which an SLO change's re-plan pays for in time served on the old
    plan (stress on the Snapdragon: sparseloom 4.15% against 0.12%), and bought nothing the online
    dispatch (deadline order, placement on the live queues, dropping) does not already give."""

    queueing: bool = False
    sustained: bool = True
    cap: float = FIXED_CAP


DEFAULT_LOAD = LoadModel()


def levels(info: ProcessorInfo) -> tuple[float, ...]:
    """The utilisation levels of ``info`` under the queueing term, its ceiling last."""
    return tuple(lv for lv in UTILISATION_LEVELS if lv < info.max_utilisation - 1e-12) + (info.max_utilisation,)


def utilisation_cap(info: ProcessorInfo, load: LoadModel = DEFAULT_LOAD) -> float:
    return info.max_utilisation if load.queueing else min(load.cap, info.max_utilisation)


# Weight of the secondary (normalised-latency) term under the throughput and memory objectives;
# small enough never to trade against the primary term on realistic scales, large enough to break ties.
TIE_WEIGHT = 1e-3
OBJECTIVES = ("slo", "throughput", "memory")


def evaluate(
    problem: Problem,
    task: TaskSpec,
    options: tuple[int, ...],
    processors: tuple[str, ...],
) -> Route:
    """The route ``options``/``processors`` of ``task`` with its modelled latency, accuracy and memory."""
    steps: list[float] = []
    digests: list[str] = []
    variants: list[str] = []
    mem: dict[str, float] = {}
    last = len(options) - 1
    for p, (o, k) in enumerate(zip(options, processors, strict=True)):
        opt = task.positions[p][o]
        step = opt.latency_ms[k]
        if p < last and processors[p + 1] != k:
            step += problem.transfer_ms(task.output_mb[p])
        steps.append(step)
        digests.append(opt.digest)
        variants.append(opt.variant)
        mem[opt.digest] = max(mem.get(opt.digest, 0.0), opt.memory_mb)
    return Route(
        task=task.name,
        options=tuple(options),
        processors=tuple(processors),
        latency_ms=sum(steps),
        accuracy=task.accuracy(tuple(options)),
        memory_mb=sum(mem.values()),
        variants=tuple(variants),
        digests=tuple(digests),
        step_latency_ms=tuple(steps),
    )


def digest_memory(problem: Problem) -> dict[str, float]:
    """Memory of each distinct block digest in the problem."""
    mem: dict[str, float] = {}
    for t in problem.tasks:
        for pos in t.positions:
            for opt in pos:
                mem[opt.digest] = max(mem.get(opt.digest, 0.0), opt.memory_mb)
    return mem


def resident_memory_mb(problem: Problem, digests: Iterable[str]) -> float:
    mem = digest_memory(problem)
    return sum(mem[d] for d in set(digests))


def request_shares(problem: Problem) -> dict[str, float]:
    """Fraction of all requests that belong to each task (equal shares when no rates are given)."""
    total = sum(t.rate_hz for t in problem.tasks)
    if total <= 0:
        return {t.name: 1.0 / len(problem.tasks) for t in problem.tasks}
    return {t.name: t.rate_hz / total for t in problem.tasks}


def latency_weight(
    problem: Problem, task: TaskSpec, shares: Mapping[str, float]
) -> float:
    """Coefficient of a task's service latency in the "slo" objective: share / SLO."""
    slo = (
        task.latency_slo_ms
        if math.isfinite(task.latency_slo_ms) and task.latency_slo_ms > 0
        else 1000.0
    )
    return shares[task.name] / slo


def memory_scale_mb(problem: Problem) -> float:
    """Normaliser of the memory objective: the budget, or all blocks together when unbounded."""
    if math.isfinite(problem.memory_budget_mb) and problem.memory_budget_mb > 0:
        return problem.memory_budget_mb
    return max(sum(digest_memory(problem).values()), 1.0)


def utilisation(problem: Problem, routes: Mapping[str, Route], load: LoadModel = DEFAULT_LOAD) -> dict[str, float]:
    """Planned busy fraction of each processor: sum over tasks of rate (sustained or mean, as
    ``load`` says) x block latency."""
    util = {k.name: 0.0 for k in problem.processors}
    for t in problem.tasks:
        r = routes[t.name]
        rate = t.load_rate_hz if load.sustained else t.rate_hz
        for p, (o, k) in enumerate(zip(r.options, r.processors, strict=True)):
            util[k] += rate / 1000.0 * t.positions[p][o].latency_ms[k]
    return util


def waits(problem: Problem, routes: Mapping[str, Route], load: LoadModel = DEFAULT_LOAD) -> dict[str, float]:
    """Modelled mean queueing wait (ms) at each processor: R / (1 - level), with R = sum rate x
    latency^2 / 2 the mean residual work and level the first of ``levels`` at or above its
    utilisation (the ILP's linearisation; infinite above the ceiling). All 0 without the queueing term."""
    if not load.queueing:
        return {k.name: 0.0 for k in problem.processors}
    util = utilisation(problem, routes, load)
    resid = {k.name: 0.0 for k in problem.processors}
    for t in problem.tasks:
        r = routes[t.name]
        rate = t.load_rate_hz if load.sustained else t.rate_hz
        for p, (o, k) in enumerate(zip(r.options, r.processors, strict=True)):
            lat = t.positions[p][o].latency_ms[k]
            resid[k] += rate / 1000.0 * lat * lat / 2.0
    out: dict[str, float] = {}
    for info in problem.processors:
        level = next((lv for lv in levels(info) if util[info.name] <= lv + 1e-9), None)
        w = resid[info.name]
        out[info.name] = 0.0 if w == 0.0 else (math.inf if level is None else w / (1.0 - level))
    return out


def waited_latency_ms(route: Route, wait: Mapping[str, float]) -> float:
    """A route's service latency plus the modelled wait at each of its blocks' processors."""
    return route.latency_ms + sum(wait[k] for k in route.processors)


def objective_value(
    problem: Problem, routes: Mapping[str, Route], objective: str, load: LoadModel = DEFAULT_LOAD
) -> float:
    """The exact objective the ILP minimises, evaluated for given routes.

    - ``slo``: sum over tasks of (request share x service latency / latency SLO), the expected
      fraction of its SLO that a request spends in service. Queueing delay is what remains of
      the SLO, so a lower value leaves more slack for queueing and fewer SLO violations; the
      utilisation cap bounds the queueing itself.
    - ``throughput``: the largest processor utilisation relative to its cap (its inverse is how
      much the load could grow before a cap is hit), plus TIE_WEIGHT x the slo term.
    - ``memory``: resident memory / budget, plus TIE_WEIGHT x the slo term.
    """
    if not problem.tasks:
        return 0.0
    shares = request_shares(problem)
    wait = waits(problem, routes, load)
    slo_term = sum(
        latency_weight(problem, t, shares) * waited_latency_ms(routes[t.name], wait)
        for t in problem.tasks
    )
    if objective == "slo":
        return slo_term
    if objective == "throughput":
        util = utilisation(problem, routes, load)
        peak = max(util[k.name] / k.max_utilisation for k in problem.processors)
        return peak + TIE_WEIGHT * slo_term
    if objective == "memory":
        digests = {d for r in routes.values() for d in r.digests}
        return (
            resident_memory_mb(problem, digests) / memory_scale_mb(problem)
            + TIE_WEIGHT * slo_term
        )
    raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")


@dataclass(frozen=True)
class Feasibility:
    """Which constraints a set of routes violates (empty tuples when feasible)."""

    latency: tuple[str, ...]
    accuracy: tuple[str, ...]
    utilisation: tuple[str, ...]
    memory_mb: float

    def ok(self, budget_mb: float) -> bool:
        return (
            not (self.latency or self.accuracy or self.utilisation)
            and self.memory_mb <= budget_mb + 1e-9
        )


def check(
    problem: Problem, routes: Mapping[str, Route], tol: float = 1e-6, load: LoadModel = DEFAULT_LOAD
) -> Feasibility:
    """Which constraints of the program ``routes`` violate: latency (service + modelled waits) over
    the SLO, accuracy under its minimum, utilisation over the cap, and the memory they need."""
    wait = waits(problem, routes, load)
    lat = tuple(
        t.name
        for t in problem.tasks
        if waited_latency_ms(routes[t.name], wait) > t.latency_slo_ms + tol
    )
    acc = tuple(
        t.name
        for t in problem.tasks
        if (a := routes[t.name].accuracy) is not None and a < t.min_accuracy - tol
    )
    util = utilisation(problem, routes, load)
    over = tuple(
        k.name for k in problem.processors if util[k.name] > utilisation_cap(k, load) + tol
    )
    digests = {d for r in routes.values() for d in r.digests}
    return Feasibility(lat, acc, over, resident_memory_mb(problem, digests))


def pareto_routes(
    problem: Problem,
    task: TaskSpec,
    allowed_digests: frozenset[str] | None = None,
    whole_variant: bool = False,
    single_processor: bool = False,
    limit: int = 12,
) -> tuple[Route, ...]:
    """Routes of ``task`` on the latency/accuracy Pareto front, fastest first.

    Only blocks in ``allowed_digests`` (all when None) and routes meeting the task's
    accuracy SLO (when known) qualify. A label-setting DP over (position, processor)
    keeps at most ``4 * limit`` labels per state, so the front is exact on small
    instances and a well-spread subset on large ones.
    """
    names = [k.name for k in problem.processors]
    if whole_variant:
        variants = (
            sorted({o.variant for o in task.positions[0]}) if task.positions else []
        )
        found: list[Route] = []
        for v in variants:
            opts = [
                _index_of_variant(task, p, v, allowed_digests)
                for p in range(len(task.positions))
            ]
            if any(o is None for o in opts):
                continue
            choice = tuple(o for o in opts if o is not None)
            found.extend(
                _placements(problem, task, choice, names, single_processor, limit)
            )
        return _front(task, found, limit)
    if single_processor:
        found = []
        for k in names:
            found.extend(_dp(problem, task, [k], allowed_digests, limit))
        return _front(task, found, limit)
    return _front(task, _dp(problem, task, names, allowed_digests, limit), limit)


def _index_of_variant(
    task: TaskSpec, p: int, variant: str, allowed: frozenset[str] | None
) -> int | None:
    for i, o in enumerate(task.positions[p]):
        if o.variant == variant and (allowed is None or o.digest in allowed):
            return i
    return None


def _placements(
    problem: Problem,
    task: TaskSpec,
    choice: tuple[int, ...],
    names: list[str],
    single: bool,
    limit: int,
) -> list[Route]:
    """Fastest placement of a fixed option choice: per processor when ``single``, else by DP."""
    if single:
        out = []
        for k in names:
            if all(k in task.positions[p][o].latency_ms for p, o in enumerate(choice)):
                out.append(evaluate(problem, task, choice, tuple([k] * len(choice))))
        return out
    # Shortest path over (position, processor) with transfer cost on a change.
    best: dict[str, tuple[float, tuple[str, ...]]] = {}
    for p, o in enumerate(choice):
        opt = task.positions[p][o]
        nxt: dict[str, tuple[float, tuple[str, ...]]] = {}
        for k, lat in opt.latency_ms.items():
            if k not in names:
                continue
            if p == 0:
                nxt[k] = (lat, (k,))
                continue
            cands = [
                (
                    c
                    + (problem.transfer_ms(task.output_mb[p - 1]) if kk != k else 0.0)
                    + lat,
                    path + (k,),
                )
                for kk, (c, path) in best.items()
            ]
            if cands:
                nxt[k] = min(cands)
        best = nxt
    if not best:
        return []
    _, path = min(best.values())
    return [evaluate(problem, task, choice, path)]


_Label = tuple[float, float, tuple[int, ...], tuple[str, ...]]


def _dp(
    problem: Problem,
    task: TaskSpec,
    names: list[str],
    allowed: frozenset[str] | None,
    limit: int,
) -> list[Route]:
    cap = 4 * limit
    states: dict[str, list[_Label]] = {}
    for p, pos in enumerate(task.positions):
        nxt: dict[str, list[_Label]] = {k: [] for k in names}
        move = problem.transfer_ms(task.output_mb[p - 1]) if p > 0 else 0.0
        for i, opt in enumerate(pos):
            if allowed is not None and opt.digest not in allowed:
                continue
            for k, lat in opt.latency_ms.items():
                if k not in nxt:
                    continue
                if p == 0:
                    nxt[k].append((lat, opt.accuracy_delta, (i,), (k,)))
                    continue
                for kk, labels in states.items():
                    extra = lat + (move if kk != k else 0.0)
                    for c, a, oi, ks in labels:
                        nxt[k].append(
                            (c + extra, a + opt.accuracy_delta, oi + (i,), ks + (k,))
                        )
        states = {k: _prune(v, cap) for k, v in nxt.items() if v}
    labels = [lab for v in states.values() for lab in v]
    return [evaluate(problem, task, oi, ks) for _, _, oi, ks in _prune(labels, cap)]


def _prune(labels: list[_Label], cap: int) -> list[_Label]:
    """Keep the latency/accuracy Pareto labels, thinned evenly to ``cap``."""
    labels.sort(key=lambda x: (x[0], -x[1]))
    front: list[_Label] = []
    best = -math.inf
    for lab in labels:
        if lab[1] > best + 1e-12:
            front.append(lab)
            best = lab[1]
    if len(front) > cap:
        step = (len(front) - 1) / (cap - 1)
        front = [front[round(i * step)] for i in range(cap)]
    return front


def _front(task: TaskSpec, routes: list[Route], limit: int) -> tuple[Route, ...]:
    ok = [
        r
        for r in routes
        if r.accuracy is None or r.accuracy >= task.min_accuracy - 1e-9
    ]
    ok.sort(
        key=lambda r: (r.latency_ms, -(r.accuracy if r.accuracy is not None else 0.0))
    )
    front: list[Route] = []
    best = -math.inf
    for r in ok:
        a = r.accuracy if r.accuracy is not None else 0.0
        if not front or a > best + 1e-12:
            front.append(r)
            best = a
    if len(front) > limit:
        step = (len(front) - 1) / (limit - 1)
        front = [front[round(i * step)] for i in range(limit)]
    return tuple(front)
