"""SparseLoom's own policy: ILP plan over stitched variants and placement, online dispatch among
precomputed Pareto routes, immediate switching on change, ILP re-planning off the hot path, and a
closed loop that re-plans on the latencies it observes when they stray from the profile."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scheduler.dispatch import RULES, check_rule, dispatch
from scheduler.feedback import Correction, Feedback
from scheduler.ilp import Restriction
from scheduler.plan import Diagnosis, Plan, Route
from scheduler.planner import PlanSettings, dispatch_settings, ilp_plan, with_unit_latencies
from scheduler.policy import PolicyBase, QueueView
from scheduler.problem import Problem
from scheduler.routes import check, digest_memory, utilisation

# Per-request dispatch rules (see ``SparseLoomPolicy.__init__``), shared with the AV baselines.
DISPATCH = RULES
# Re-plan on observed latencies once a block x processor pair is this far (relative) from what the
# plan assumed. Above the spread of repeated measurements of one block on this host (under 10% at
# the profiler's medians), so noise alone does not re-plan; below the 20-25% errors of the
# profile-error axis (factors 0.8, 1.25), which it is there to catch.
REPLAN_ERROR = 0.15


@dataclass(frozen=True)
class CorrectedPlan(Plan):
    """A plan made on latencies corrected by what the closed loop observed: it carries the factors
    (observed / profile, per block x processor, see scheduler.feedback) it was made on, so that the
    next correction is judged against them and an SLO change's switch and re-plan keep them. A plan on
    the profile itself is a plain :class:`Plan`. This policy's data, not every plan's."""

    latency_factors: Mapping[tuple[str, str], float] = field(default_factory=dict)


def latency_factors(plan: Plan) -> Mapping[tuple[str, str], float]:
    """The factors ``plan`` was made on; empty for a plan on the profile."""
    return plan.latency_factors if isinstance(plan, CorrectedPlan) else {}


def _corrected(plan: Plan, factors: Mapping[tuple[str, str], float]) -> Plan:
    return CorrectedPlan(**vars(plan), latency_factors=factors) if factors else plan


class SparseLoomPolicy(PolicyBase):
    """Joint stitched-variant selection and placement by ILP; per request the planned stitched
    variant placed on the processors that finish it first."""

    def __init__(self, dispatch: str = "place", drop_late: bool = True, admission: bool = True,
                 **options: Any) -> None:
        """``dispatch``: "place" (the planned stitched variant, its blocks placed per request for the
        least expected finish; the most accurate alternative in time when that is late), "hold" (as
        "place", with hysteresis: a fallback is kept through the burst, see
        ``scheduler.dispatch.planned_or_held``), "plan" (the planned route as planned when in time,
        else the most accurate in time) or "accuracy" (always the most accurate route in time);
        other options go to ``settings_from``.

        "place" is the default by measurement, the same one that picks the AV baselines' rule
        (``benchmarks/dispatch_rules.py``, 3 seeds x 10 s, modelled on the SoC files' published
        results), quickstart on the Core Ultra and on the Orin: sparseloom 0.45 / 0.03% with
        "place", 0.44 / 0.03% with "hold", 10.08 / 0.00% with "plan", 10.70 / 0.30% with
        "accuracy" (av-np 3.94 / 0.25, 3.94 / 0.25, 12.96 / 8.58, 14.30 / 7.21%). "hold" ties
        "place" there: its 45 variant switches per run on the Core Ultra are the re-plans', not
        per-request flips, so there is nothing for the hysteresis to damp, and "place" is simpler."""
        self.name = "sparseloom"
        self.dispatch = check_rule(dispatch)
        self.drop_late = drop_late
        self.admission = admission
        self.settings, self.replan_settings = dispatch_settings(self.dispatch, **options)

    closed_loop = True

    def plan(self, problem: Problem) -> Plan:
        return self._plan(problem, self.settings)

    def _plan(self, problem: Problem, settings: PlanSettings) -> Plan:
        return with_unit_latencies(ilp_plan(problem, self.name, settings, Restriction()), problem)

    def _plan_on(self, problem: Problem, correction: Correction) -> Plan:
        """The re-plan for ``problem`` with its latencies corrected, recording the factors it used."""
        return _corrected(self._plan(correction.apply(problem), self.replan_settings), correction.factors(problem))

    def recalibrate(self, problem: Problem, plan: Plan, feedback: Feedback) -> Plan | None:
        """A plan on the observed latencies (per block x processor; an unobserved block by the
        median factor of its processor's observed blocks of comparable latency) once one differs
        from what ``plan`` assumed by REPLAN_ERROR."""
        correction = Correction.of(feedback)
        if correction.worst_error(latency_factors(plan)) <= REPLAN_ERROR:
            return None
        return self._plan_on(problem, correction)

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return dispatch(self.dispatch, task, plan, state)

    def replan(self, problem: Problem, plan: Plan) -> Plan:
        """Full ILP re-plan, on the latency factors ``plan`` was made on; the runtime calls it off the hot
        path on an SLO or memory change, after :meth:`switch`."""
        made_on = latency_factors(plan)
        if not made_on:
            return self._plan(problem, self.replan_settings)
        return self._plan_on(problem, Correction(dict(made_on)))

    def switch(self, plan: Plan, problem: Problem) -> Plan:
        """Adapt ``plan`` to a changed problem (SLOs, rates, memory budget) at once, without the ILP; the
        switched plan keeps the latency factors ``plan`` was made on, so the re-plan after it does too."""
        switched = with_unit_latencies(switch_plan(plan, problem, self.name, self.settings.objective), problem)
        return _corrected(switched, latency_factors(plan))


def switch_plan(
    plan: Plan, problem: Problem, policy: str, objective: str = "slo"
) -> Plan:
    """Pick each task's route among its precomputed alternatives for the new SLOs and budget.

    Per task, among alternatives meeting the new accuracy and latency SLOs, the one the ILP's
    objective prefers when tasks are considered alone (least latency for "slo" and "throughput",
    least memory then latency for "memory"), else the fastest; then, while resident memory
    exceeds the new budget, move the task whose switch frees the most memory per ms added. The result says what it could not meet, in which
    case the caller should re-plan with the ILP.
    """
    start = time.perf_counter()
    routes: dict[str, Route] = {}
    for t in problem.tasks:
        alts = plan.alternatives.get(t.name) or (
            (plan.routes[t.name],) if t.name in plan.routes else ()
        )
        if not alts:
            continue
        ok = [
            r
            for r in alts
            if r.latency_ms <= t.latency_slo_ms
            and (r.accuracy is None or r.accuracy >= t.min_accuracy)
        ]
        if objective == "memory":
            routes[t.name] = (
                min(ok, key=lambda r: (r.memory_mb, r.latency_ms)) if ok else alts[0]
            )
        else:
            routes[t.name] = (
                min(ok, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))
                if ok
                else alts[0]
            )
    mem = digest_memory(problem)

    def resident_mb(rs: dict[str, Route]) -> float:
        return sum(mem[d] for d in {d for r in rs.values() for d in r.digests})

    while resident_mb(routes) > problem.memory_budget_mb:
        current = resident_mb(routes)
        best: tuple[float, str, Route] | None = None
        for name, r in routes.items():
            t = problem.task(name)
            for a in plan.alternatives.get(name, ()):
                if a is r or a.latency_ms > t.latency_slo_ms:
                    continue
                freed = current - resident_mb({**routes, name: a})
                if freed <= 0:
                    continue
                cost = max(a.latency_ms - r.latency_ms, 1e-6)
                if best is None or freed / cost > best[0]:
                    best = (freed / cost, name, a)
        if best is None:
            break
        routes[best[1]] = best[2]
    diagnoses: list[Diagnosis] = []
    missing = [t.name for t in problem.tasks if t.name not in routes]
    for name in missing:
        diagnoses.append(
            Diagnosis(
                name,
                "placement",
                None,
                None,
                f"task {name!r} has no precomputed route; re-plan",
            )
        )
    if not missing and problem.tasks:
        f = check(problem, routes)
        for name in f.latency:
            t = problem.task(name)
            diagnoses.append(
                Diagnosis(
                    name,
                    "latency",
                    t.latency_slo_ms,
                    routes[name].latency_ms,
                    f"task {name!r}: no precomputed route meets the new {t.latency_slo_ms:.3f} ms SLO; re-plan",
                )
            )
        for name in f.accuracy:
            t = problem.task(name)
            diagnoses.append(
                Diagnosis(
                    name,
                    "accuracy",
                    t.min_accuracy,
                    routes[name].accuracy,
                    f"task {name!r}: no precomputed route meets min accuracy {t.min_accuracy}; re-plan",
                )
            )
        util = utilisation(problem, routes)
        for k in problem.processors:
            if k.name in f.utilisation:
                diagnoses.append(
                    Diagnosis(
                        None,
                        "utilisation",
                        k.max_utilisation,
                        util[k.name],
                        f"processor {k.name} would be busy {util[k.name]:.0%}; re-plan",
                    )
                )
        if f.memory_mb > problem.memory_budget_mb + 1e-9:
            diagnoses.append(
                Diagnosis(
                    None,
                    "memory",
                    problem.memory_budget_mb,
                    f.memory_mb,
                    f"precomputed routes need {f.memory_mb:.1f} MB, above the new budget; re-plan",
                )
            )
    resident = frozenset(d for r in routes.values() for d in r.digests)
    left = problem.memory_budget_mb - sum(mem[d] for d in resident)
    preload: list[str] = []
    for d in plan.preload:
        if d not in resident and d in mem and mem[d] <= left:
            preload.append(d)
            left -= mem[d]
    return Plan(
        routes=routes,
        info=replace(
            plan.info,
            solver="switch",
            status="switched" if not diagnoses else "needs_replan",
            wall_s=time.perf_counter() - start,
            gap=None,
            objective=None,
        ),
        alternatives={
            name: a for name, a in plan.alternatives.items() if name in routes
        },
        resident=resident,
        preload=tuple(preload),
        explanation=tuple(d.message for d in diagnoses),
        diagnoses=tuple(diagnoses),
        policy=policy,
        slo_ms={t.name: t.latency_slo_ms for t in problem.tasks},
    )
