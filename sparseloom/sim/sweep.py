"""Sweeps: the same comparison at many load, SLO-scale and memory-budget points, in parallel processes.

Each point changes the problem (the policies re-plan for it) and, for load,
the arrivals; every policy at a point sees the same arrivals. Points run in a
process pool, so policies and problems must be picklable (module-level
classes and frozen dataclasses are).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tqdm import tqdm

from scheduler.policy import Policy
from scheduler.problem import Problem
from sparseloom.sim.experiment import Experiment, ProfileError
from sparseloom.sim.parallel import PROCESS, Engine, map_jobs
from sparseloom.sim.runner import Comparison, compare, scale_rates
from sparseloom.workload import Arrival


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: a load scale, a latency-SLO scale and optionally a memory budget."""

    rate_scale: float = 1.0
    slo_scale: float = 1.0
    memory_budget_mb: float | None = None
    # The truth runs at the profile x this (policies plan on the profile): the profile-error axis.
    error_scale: float = 1.0

    @property
    def label(self) -> str:
        parts = [f"load x{self.rate_scale:g}", f"SLO x{self.slo_scale:g}"]
        if self.error_scale != 1.0:
            parts.append(f"truth x{self.error_scale:g} the profile")
        if self.memory_budget_mb is not None:
            parts.append(f"{self.memory_budget_mb:g} MB")
        return ", ".join(parts)


def apply_point(problem: Problem, point: SweepPoint) -> Problem:
    """The problem at a sweep point: expected rates and latency SLOs scaled, budget replaced."""
    out = scale_rates(problem, point.rate_scale)
    if point.slo_scale != 1.0:
        tasks = tuple(
            replace(t, latency_slo_ms=t.latency_slo_ms * point.slo_scale)
            for t in out.tasks
        )
        out = replace(out, tasks=tasks)
    if point.memory_budget_mb is not None:
        out = replace(out, memory_budget_mb=point.memory_budget_mb)
    return out


@dataclass(frozen=True)
class _Job:
    problem: Problem
    policies: tuple[Policy, ...]
    specs: Mapping[str, Arrival]
    point: SweepPoint
    experiment: Experiment


def at_point(experiment: Experiment, point: SweepPoint) -> Experiment:
    """The experiment at a sweep point: its SLO changes' latencies scaled with the SLOs, the load
    scaled, and the truth ``point.error_scale`` times further from the profile (per-block error kept)."""
    changes = tuple(replace(c, latency_ms=c.latency_ms * point.slo_scale) if c.latency_ms is not None else c
                    for c in experiment.slo_changes)
    error = experiment.profile_error or ProfileError(seed=experiment.seed)
    return replace(experiment, slo_changes=changes, rate_scale=experiment.rate_scale * point.rate_scale,
                   profile_error=replace(error, scale=error.scale * point.error_scale))


def _run(job: _Job) -> Comparison:
    return compare(
        apply_point(job.problem, job.point),
        job.policies,
        job.specs,
        at_point(job.experiment, job.point),
        progress=False,
        workers=1,  # the sweep already runs its points in parallel processes
    )


def run_sweep(
    problem: Problem,
    policies: Sequence[Policy],
    specs: Mapping[str, Arrival],
    points: Sequence[SweepPoint],
    experiment: Experiment,
    *,
    workers: int | None = None,
    progress: bool = True,
    engine: Engine = PROCESS,
) -> list[tuple[SweepPoint, Comparison]]:
    """Compare every policy at every point (:func:`at_point`); results come back in the order of ``points``.

    ``workers``: processes to use (default: the CPUs available, at most one per
    point); 1 runs in this process. ``engine``: a "ray" one runs the points on Ray instead (each
    point's job carries the problem, policies and experiment by value; trace arrivals are read by
    the worker from the experiment's ``base_dir``, which must then be on every node).
    """
    jobs = [_Job(problem, tuple(policies), dict(specs), p, experiment) for p in points]
    n = workers or min(len(jobs), len(os.sched_getaffinity(0)))
    bar = tqdm(
        total=len(jobs), desc="sweep", unit="point", disable=not progress, leave=False
    )
    results = map_jobs(_run, jobs, n, bar, engine)
    bar.close()
    return list(zip(points, results, strict=True))
