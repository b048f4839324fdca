"""Accuracy for the verdict: before a run, measure every stitched variant that any policy's plan
(alternatives included) may put into service, so accuracy SLOs are judged on measurement.

The estimator stays what the planners search with; the simulator counts accuracy violations
against these measured values, and :class:`VerdictReport` says how far the estimator was from
them on exactly these variants. Measurements are cached per model in the pool
(``accuracy/<model>-served-<key>.json``), so a warm run measures nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from scheduler.plan import Plan
from scheduler.problem import Problem, TaskSpec
from sparseloom.assemble import Assembled, _key, evaluation_key, evaluator_for, measured_choices
from sparseloom.errors import InputError
from sparseloom.errors import Complaint
from stitching import sealed
from stitching.stitch import Measurer
from stitching.zoo.evaluate import EvaluationError


@dataclass(frozen=True)
class ModelVerdict:
    """One model's served variants: how many, how many measured now, and the estimator's error on them."""

    model: str
    variants: int
    measured_now: int
    mean_abs_error: float | None  # |estimate - measured| in accuracy points, over the served variants
    max_abs_error: float | None

    def to_dict(self) -> dict[str, object]:
        return {"variants": self.variants, "measured_now": self.measured_now,
                "estimator_mean_abs_error": self.mean_abs_error, "estimator_max_abs_error": self.max_abs_error}


@dataclass(frozen=True)
class VerdictReport:
    models: Mapping[str, ModelVerdict]

    def to_dict(self) -> dict[str, object]:
        return {m: v.to_dict() for m, v in self.models.items()}

    def describe(self) -> str:
        parts = []
        for m, v in self.models.items():
            err = "n/a" if v.mean_abs_error is None else f"{100 * v.mean_abs_error:.2f} pts mean, " \
                                                           f"{100 * (v.max_abs_error or 0.0):.2f} max"
            parts.append(f"{m}: {v.variants} served variants measured, estimator error {err}")
        return "accuracy judged on measurement - " + "; ".join(parts) if parts else ""


def served_choices(plans: Mapping[str, Plan]) -> dict[str, set[tuple[int, ...]]]:
    """Per task, the option choices of every route any plan may serve (routes and alternatives)."""
    out: dict[str, set[tuple[int, ...]]] = {}
    for plan in plans.values():
        for name, route in plan.routes.items():
            out.setdefault(name, set()).add(route.options)
        for name, alts in plan.alternatives.items():
            out.setdefault(name, set()).update(a.options for a in alts)
    return out


def _digests(task: TaskSpec, choice: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(task.positions[p][o].digest for p, o in enumerate(choice))


def _served_record(path: Path) -> dict[tuple[str, ...], float]:
    """The measured accuracy of each variant (its block digests) cached at ``path``; {} when none or bad."""
    record = sealed.read(path, legacy=lambda doc: isinstance(doc, list))  # older records: a bare list
    return {tuple(k): float(a) for k, a in record} if isinstance(record, list) else {}


def measure_served(assembled: Assembled, plans: Mapping[str, Plan], cache_dir: Path,
                   progress: bool = True) -> tuple[Problem, VerdictReport]:
    """The problem with every served variant's measured accuracy, and the estimator's error on them."""
    problem = assembled.problem
    pool = assembled.pool
    wanted = served_choices(plans)
    by_model: dict[str, list[TaskSpec]] = {}
    for t in problem.tasks:
        if t.base_accuracy is not None and t.name in wanted:
            by_model.setdefault(t.model, []).append(t)
    measured: dict[str, dict[tuple[str, ...], float]] = {}
    report: dict[str, ModelVerdict] = {}
    for model, tasks in by_model.items():
        info = pool.model_info(model)
        digests_of = {c: _digests(t, c) for t in tasks for c in wanted[t.name]}
        user = assembled.evaluators.get(model) if info["zoo"] is None else None
        path = pool.root / "accuracy" / (f"{model}-served-"
                                         f"{_key(sorted(b.digest for b in pool.blocks(model)), *evaluation_key(user))}.json")
        known = _served_record(path)
        for t in tasks:
            known.update({_digests(t, c): a for c, a in t.measured_accuracy.items()})
        todo = sorted({d for d in digests_of.values() if d not in known})
        if todo:
            evaluator = evaluator_for(pool, model, cache_dir, assembled.evaluators)
            if evaluator is not None:
                measurer = Measurer(pool, evaluator)
                try:
                    for d in tqdm(todo, desc=f"measure served {model}", unit="variant", leave=False,
                                  disable=not progress):
                        known[d] = measurer.measure(d)
                except EvaluationError as err:
                    raise InputError([Complaint(f"models.{model}.evaluation", "an evaluate that returns a number "
                                                "in [0, 1] within its time limit", str(err))]) from None
                with sealed.lock(path):  # merge with what another process may have added meanwhile
                    merged = {**_served_record(path), **known}
                    sealed.write(path, [[list(k), a] for k, a in sorted(merged.items())])
        measured[model] = known
        errors = []
        for t in tasks:
            for c in wanted[t.name]:
                est, got = t.estimated_accuracy(c), known.get(digests_of[c])
                if est is not None and got is not None:
                    errors.append(abs(est - got))
        report[model] = ModelVerdict(model, len(set(digests_of.values())), len(todo),
                                     sum(errors) / len(errors) if errors else None, max(errors) if errors else None)
    tasks = []
    for t in problem.tasks:
        found = measured.get(t.model)
        if not found:
            tasks.append(t)
            continue
        tasks.append(replace(t, measured_accuracy={**t.measured_accuracy, **measured_choices(t.positions, found)}))
    return replace(problem, tasks=tuple(tasks)), VerdictReport(report)

