"""Why a problem is infeasible: which task, which constraint, and the best value achievable.

Each task is first solved alone (small programs), then the coupling constraints (memory,
processor utilisation) are relaxed one at a time to see which one binds.
"""

from __future__ import annotations

import math

from scheduler.ilp import Enforce, Restriction, SolverConfig, single_task, solve
from scheduler.plan import Diagnosis
from scheduler.problem import Problem
from scheduler.routes import check, utilisation, utilisation_cap

_NO_COUPLING = Enforce(latency=True, accuracy=True, utilisation=False, memory=False)


def diagnose(
    problem: Problem,
    config: SolverConfig | None = None,
    restriction: Restriction | None = None,
) -> tuple[Diagnosis, ...]:
    """Diagnoses of an infeasible problem (empty when the problem is feasible)."""
    found: list[Diagnosis] = []
    for task in problem.tasks:
        found.extend(_task_alone(problem, task.name, config, restriction))
    if found:
        return tuple(found)
    if solve(problem, "slo", config, restriction).found:
        return ()
    # Every task fits alone: the coupling constraints bind. Relax each in turn.
    no_mem = solve(problem, "memory", config, restriction, Enforce(memory=False))
    if no_mem.found:
        need = check(problem, no_mem.routes).memory_mb
        if need > problem.memory_budget_mb:
            found.append(
                Diagnosis(
                    None,
                    "memory",
                    problem.memory_budget_mb,
                    need,
                    f"memory budget {problem.memory_budget_mb:.1f} MB is below the {need:.1f} MB the tasks "
                    "need together while meeting their latency and accuracy SLOs within processor capacity",
                )
            )
    no_util = solve(
        problem, "throughput", config, restriction, Enforce(utilisation=False)
    )
    if no_util.found:
        util = utilisation(problem, no_util.routes)
        peak = max(util[k.name] / utilisation_cap(k) for k in problem.processors)
        if peak > 1.0 + 1e-6:
            worst = max(
                problem.processors, key=lambda k: util[k.name] / utilisation_cap(k)
            )
            found.append(
                Diagnosis(
                    None,
                    "utilisation",
                    utilisation_cap(worst),
                    util[worst.name],
                    f"request rates (sustained: bursty tasks at their on-state rate) need processor "
                    f"{worst.name} busy {util[worst.name]:.0%} of the time at best, above its cap of "
                    f"{utilisation_cap(worst):.0%}",
                )
            )
    if not found:
        found.append(
            Diagnosis(
                None,
                "joint",
                None,
                None,
                "memory budget and processor capacity cannot both be met together "
                "(each alone can be)",
            )
        )
    return tuple(found)


def _task_alone(
    problem: Problem,
    name: str,
    config: SolverConfig | None,
    restriction: Restriction | None,
) -> list[Diagnosis]:
    task = problem.task(name)
    alone = single_task(problem, task)
    out: list[Diagnosis] = []
    free = Enforce(latency=False, accuracy=False, utilisation=False, memory=False)
    acc_ok = True
    if task.base_accuracy is not None:
        best = solve(alone, "accuracy", config, restriction, free)
        if not best.found:
            return [
                Diagnosis(
                    name,
                    "placement",
                    None,
                    None,
                    f"task {name!r}: some position has no block that can run on any processor",
                )
            ]
        best_acc = best.routes[name].accuracy
        assert best_acc is not None
        if best_acc < task.min_accuracy - 1e-9:
            acc_ok = False
            out.append(
                Diagnosis(
                    name,
                    "accuracy",
                    task.min_accuracy,
                    best_acc,
                    f"task {name!r}: min accuracy {task.min_accuracy:.4f} is unreachable; "
                    f"the most accurate stitched variant reaches {best_acc:.4f}",
                )
            )
    fastest = solve(
        alone,
        "latency",
        config,
        restriction,
        Enforce(latency=False, accuracy=acc_ok, utilisation=False, memory=False),
    )
    if not fastest.found:
        return out or [
            Diagnosis(
                name,
                "placement",
                None,
                None,
                f"task {name!r}: no route can be placed on the processors",
            )
        ]
    best_ms = fastest.routes[name].latency_ms
    if best_ms > task.latency_slo_ms + 1e-9:
        cond = "meeting its min accuracy" if acc_ok else "ignoring accuracy"
        out.append(
            Diagnosis(
                name,
                "latency",
                task.latency_slo_ms,
                best_ms,
                f"task {name!r}: latency SLO {task.latency_slo_ms:.3f} ms is unreachable; "
                f"the fastest route {cond} takes {best_ms:.3f} ms",
            )
        )
    elif acc_ok and task.base_accuracy is not None:
        within = solve(alone, "accuracy", config, restriction, _NO_COUPLING)
        if not within.found:
            out.append(
                Diagnosis(
                    name,
                    "accuracy",
                    task.min_accuracy,
                    None,
                    f"task {name!r}: no route meets both its latency and accuracy SLOs",
                )
            )
    if out:
        return out
    # SLOs reachable alone: does the task alone fit memory and its share of processor time?
    if not solve(alone, "slo", config, restriction, Enforce(utilisation=False)).found:
        least = solve(
            alone,
            "memory",
            config,
            restriction,
            Enforce(memory=False, utilisation=False),
        )
        need = check(alone, least.routes).memory_mb if least.found else math.nan
        out.append(
            Diagnosis(
                name,
                "memory",
                problem.memory_budget_mb,
                need,
                f"task {name!r} alone needs {need:.1f} MB within its SLOs, above the "
                f"{problem.memory_budget_mb:.1f} MB budget",
            )
        )
    elif not solve(alone, "slo", config, restriction, Enforce(memory=False)).found:
        least = solve(
            alone,
            "throughput",
            config,
            restriction,
            Enforce(memory=False, utilisation=False),
        )
        peak = math.nan
        if least.found:
            util = utilisation(alone, least.routes)
            peak = max(util[k.name] / utilisation_cap(k) for k in alone.processors)
        out.append(
            Diagnosis(
                name,
                "utilisation",
                1.0,
                peak,
                f"task {name!r} at {task.load_rate_hz:g} Hz (sustained) alone needs {peak:.2f}x the allowed "
                "processor time within its SLOs",
            )
        )
    return out
