"""Turn one ILP solve into a full Plan: routes, Pareto alternatives, residency, pre-load order,
and, for an infeasible problem, a diagnosis plus best-effort routes.

Every ILP-based policy (SparseLoom's own and the SV/AV baselines) goes through ``ilp_plan`` so
they share the solver, its settings, the infeasibility handling and the alternatives logic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from scheduler.explain import diagnose
from scheduler.ilp import Restriction, Solution, SolverConfig, solve
from scheduler.plan import Diagnosis, Plan, Route, SolveInfo
from scheduler.preload import PRELOADERS, preloader
from scheduler.problem import Problem
from scheduler.routes import FIXED_CAP, OBJECTIVES, LoadModel, evaluate, pareto_routes, resident_memory_mb


@dataclass(frozen=True)
class PlanSettings:
    """How an ILP-based policy plans."""

    objective: str = "slo"
    solver: SolverConfig = field(default_factory=SolverConfig)
    preloader: str = "hot"
    # Whether per-request switching among Pareto routes is allowed (False: the planned route only).
    switching: bool = True
    alternatives_limit: int = 12
    load: LoadModel = field(default_factory=LoadModel)
    # Pre-load only the blocks of alternatives faster than the planned route: all a dispatch that
    # leaves the planned variant only when it is late ("place") can switch to. False: any alternative.
    preload_faster_only: bool = False
    # The lexicographic memory stage (scheduler.ilp.solve): least resident memory within this
    # relative slack of the objective's optimum; None skips it (re-plans do, being on the clock).
    memory_slack: float | None = None


SETTING_NAMES = (
    "objective",
    "backend",
    "time_limit_s",
    "gap_rel",
    "threads",
    "preloader",
    "alternatives_limit",
    "queueing",
    "rates",
    "utilisation_cap",
    "memory_slack",
)
# The memory stage's slack when it is asked for (``memory_slack``): up to 2% of the "slo" objective
# (the share of their SLOs requests spend in service) may go to saving memory.
# benchmarks/memory_stage.py trades along it: on 8 synthetic 6x6x6x4 problems, medians 0 / 9.7 / 16.4%
# memory saved for 0 / 1.67 / 4.28% objective at slack 0 / 2% / 5%, for 2.5 / 3.2 / 3.8x the solve
# time. It is off by default, by the same measurement: on the shipped quickstart cells (Orin, Core
# Ultra) it found nothing to save (56.2 -> 56.4 MB; every plan sits on the MiniLM embedding's
# floor) and sparseloom's violations went from 0.03% to 0.07%. Re-plans never run it.
MEMORY_SLACK = 0.02
QUEUEING = ("pk", "cap")
RATES = ("sustained", "mean")


def settings_from(**options: Any) -> PlanSettings:
    """PlanSettings from the keyword options every ILP-based policy accepts (SETTING_NAMES)."""
    unknown = sorted(set(options) - set(SETTING_NAMES))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(SETTING_NAMES)}"
        )
    return _settings(**options)


def _settings(
    objective: str = "slo",
    backend: str = "highs",
    time_limit_s: float = 10.0,
    gap_rel: float = 1e-4,
    threads: int = 1,
    preloader: str = "hot",
    alternatives_limit: int = 12,
    queueing: str = "cap",
    rates: str = "sustained",
    utilisation_cap: float = FIXED_CAP,
    memory_slack: float | None = None,
) -> PlanSettings:
    if objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}"
        )
    if preloader not in PRELOADERS:
        raise ValueError(
            f"unknown preloader {preloader!r}; known: {', '.join(PRELOADERS)}"
        )
    if queueing not in QUEUEING:
        raise ValueError(f"unknown queueing {queueing!r}; known: {', '.join(QUEUEING)}")
    if rates not in RATES:
        raise ValueError(f"unknown rates {rates!r}; known: {', '.join(RATES)}")
    if not 0 < utilisation_cap < 1:
        raise ValueError(f"utilisation_cap must lie in (0, 1), got {utilisation_cap}")
    if memory_slack is not None and not 0 <= memory_slack < 1:
        raise ValueError(f"memory_slack must lie in [0, 1) or be None, got {memory_slack}")
    if alternatives_limit < 2:
        raise ValueError("alternatives_limit must be at least 2")
    return PlanSettings(
        objective,
        SolverConfig(backend, time_limit_s, gap_rel, threads),
        preloader,
        True,
        alternatives_limit,
        LoadModel(queueing == "pk", rates == "sustained", utilisation_cap),
        memory_slack=memory_slack,
    )


def dispatch_settings(rule: str, **options: Any) -> tuple[PlanSettings, PlanSettings]:
    """The settings of a policy that dispatches by ``rule`` (scheduler.dispatch.RULES): for its
    plans, and for its re-plans, which are on the clock (the old plan serves until they are done)
    and so skip the memory stage. "place" and "hold" leave the planned variant only for a faster
    one, so only those alternatives are worth pre-loading."""
    settings = replace(settings_from(**options), preload_faster_only=rule in ("place", "hold"))
    return settings, replace(settings, memory_slack=None)


def ilp_plan(
    problem: Problem, policy: str, settings: PlanSettings, restriction: Restriction
) -> Plan:
    start = time.perf_counter()
    sol = solve(problem, settings.objective, settings.solver, restriction, load=settings.load,
                memory_slack=settings.memory_slack)
    diagnoses: tuple[Diagnosis, ...] = ()
    routes = dict(sol.routes)
    info = sol.info
    if not sol.found:
        diagnoses = diagnose(problem, settings.solver, restriction)
        if not diagnoses:
            # Feasible after all: the solver ran out of time before finding a solution.
            limit = settings.solver.time_limit_s
            diagnoses = (
                Diagnosis(
                    None,
                    "time_limit",
                    None,
                    None,
                    f"the solver found no solution within its {limit:g} s time limit; "
                    "routes are best-effort (raise time_limit_s)",
                ),
            )
        # Best effort: let load give before accuracy and memory (a variant below its accuracy SLO fails
        # every request of its task, blocks over the budget thrash); those give too only when no
        # choice meets them.
        best = solve(
            problem, settings.objective, settings.solver, restriction, elastic=True, load=settings.load,
            load_only=True,
        )
        if not best.found:
            tried = best.info.work
            best = solve(
                problem, settings.objective, settings.solver, restriction, elastic=True, load=settings.load
            )
            best = Solution(best.routes, replace(best.info, work=best.info.work + tried))
        routes = dict(best.routes) if best.found else _fastest(problem, restriction)
        info = SolveInfo(
            sol.info.solver,
            sol.info.status,
            0.0,
            best.info.gap,
            best.info.objective,
            settings.objective,
            sol.info.work + best.info.work,
        )
    resident = frozenset(d for r in routes.values() for d in r.digests)
    left_mb = max(0.0, problem.memory_budget_mb - resident_memory_mb(problem, resident))
    alternatives: dict[str, tuple[Route, ...]] = {}
    preload: tuple[str, ...] = ()
    if settings.switching and problem.tasks:
        candidates = {
            t.name: _candidates(
                problem, t.name, restriction, None, settings.alternatives_limit
            )
            for t in problem.tasks
        }
        if settings.preload_faster_only:
            candidates = {name: tuple(r for r in c if name in routes and r.latency_ms < routes[name].latency_ms - 1e-9)
                          for name, c in candidates.items()}
        preload = preloader(settings.preloader)(
            problem, candidates, left_mb, resident, None
        )
        loaded = resident | frozenset(preload)
        for t in problem.tasks:
            if t.name not in routes:
                continue
            alts = _candidates(
                problem, t.name, restriction, loaded, settings.alternatives_limit
            )
            alternatives[t.name] = _with_route(alts, routes[t.name])
    else:
        alternatives = {name: (r,) for name, r in routes.items()}
    info = replace(info, wall_s=time.perf_counter() - start)
    return Plan(
        routes=routes,
        info=info,
        alternatives=alternatives,
        resident=resident,
        preload=preload,
        explanation=tuple(d.message for d in diagnoses),
        diagnoses=tuple(diagnoses),
        policy=policy,
        slo_ms={t.name: t.latency_slo_ms for t in problem.tasks},
    )


def _candidates(
    problem: Problem,
    name: str,
    restriction: Restriction,
    loaded: frozenset[str] | None,
    limit: int,
) -> tuple[Route, ...]:
    task = problem.task(name)
    allowed = restriction.allowed.get(name)
    digests = loaded
    if allowed is not None:
        ok = frozenset(
            task.positions[p][o].digest
            for p in range(len(task.positions))
            for o in allowed[p]
        )
        digests = ok if digests is None else digests & ok
    return pareto_routes(
        problem,
        task,
        digests,
        restriction.whole_variant,
        restriction.single_processor,
        limit,
    )


def _with_route(alts: tuple[Route, ...], route: Route) -> tuple[Route, ...]:
    """The alternatives with the planned route included, fastest first."""
    if any(
        a.options == route.options and a.processors == route.processors for a in alts
    ):
        return alts
    return tuple(
        sorted(alts + (route,), key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))
    )


def _fastest(problem: Problem, restriction: Restriction) -> dict[str, Route]:
    """Last resort when even the elastic program finds nothing: each task's fastest placeable route.

    A task with a position that no processor can run gets no route (its diagnosis says so).
    """
    out: dict[str, Route] = {}
    names = {k.name for k in problem.processors}
    for t in problem.tasks:
        allowed = restriction.allowed.get(t.name)
        opts: list[int] = []
        procs: list[str] = []
        for p, pos in enumerate(t.positions):
            cells = [
                (lat, o, k)
                for o, opt in enumerate(pos)
                if allowed is None or o in allowed[p]
                for k, lat in opt.latency_ms.items()
                if k in names
            ] or [
                (lat, o, k)
                for o, opt in enumerate(pos)
                for k, lat in opt.latency_ms.items()
                if k in names
            ]
            if not cells:
                break
            _, o, k = min(cells)
            opts.append(o)
            procs.append(k)
        else:
            out[t.name] = evaluate(problem, t, tuple(opts), tuple(procs))
    return out


def with_unit_latencies(plan: Plan, problem: Problem) -> Plan:
    """The plan with, per task, each planned block's latency on every processor that can run it and
    the transfer cost after each position: what placing blocks at request time needs."""
    names = {k.name for k in problem.processors}
    blocks_ms: dict[str, tuple[dict[str, float], ...]] = {}
    moves: dict[str, tuple[float, ...]] = {}
    for t in problem.tasks:
        if t.name not in plan.routes:
            continue
        r = plan.routes[t.name]
        blocks_ms[t.name] = tuple(
            {k: ms for k, ms in t.positions[p][o].latency_ms.items() if k in names}
            for p, o in enumerate(r.options)
        )
        moves[t.name] = tuple(problem.transfer_ms(mb) for mb in t.output_mb)
    return replace(plan, block_latency_ms=blocks_ms, block_transfer_ms=moves)
