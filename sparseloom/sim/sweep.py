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
from pathlib import Path

from tqdm import tqdm

from scheduler.policy import Policy
from scheduler.problem import Problem
from sparseloom.sim.engine import SLOChangeEvent
from sparseloom.sim.parallel import PROCESS, Engine, map_jobs
from sparseloom.sim.runner import Comparison, ProfileError, compare, scale_rates
from sparseloom.workload import Arrival, Transitions


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
    duration_s: float
    warmup_s: float
    seed: int
    seeds: int
    slo_changes: tuple[SLOChangeEvent, ...]
    base_dir: str
    transitions: Transitions | None
    latency_cv: float
    block_error_cv: float


def _run(job: _Job) -> Comparison:
    changes = tuple(
        replace(c, latency_ms=c.latency_ms * job.point.slo_scale)
        if c.latency_ms is not None
        else c
        for c in job.slo_changes
    )
    return compare(
        apply_point(job.problem, job.point),
        job.policies,
        job.specs,
        duration_s=job.duration_s,
        warmup_s=job.warmup_s,
        seed=job.seed,
        seeds=job.seeds,
        slo_changes=changes,
        rate_scale=job.point.rate_scale,
        base_dir=job.base_dir,
        transitions=job.transitions,
        latency_cv=job.latency_cv,
        profile_error=ProfileError(job.point.error_scale, job.block_error_cv, job.seed),
        progress=False,
        workers=1,  # the sweep already runs its points in parallel processes
    )


def run_sweep(
    problem: Problem,
    policies: Sequence[Policy],
    specs: Mapping[str, Arrival],
    points: Sequence[SweepPoint],
    *,
    duration_s: float,
    warmup_s: float = 0.0,
    seed: int = 0,
    seeds: int = 1,
    slo_changes: Sequence[SLOChangeEvent] = (),
    base_dir: str | Path = ".",
    transitions: Transitions | None = None,
    latency_cv: float = 0.0,
    block_error_cv: float = 0.0,
    workers: int | None = None,
    progress: bool = True,
    engine: Engine = PROCESS,
) -> list[tuple[SweepPoint, Comparison]]:
    """Compare every policy at every point; results come back in the order of ``points``.

    ``workers``: processes to use (default: the CPUs available, at most one per
    point); 1 runs in this process. ``engine``: a "ray" one runs the points on Ray instead (each
    point's job carries the problem, policies and settings by value; trace arrivals are read by the
    worker from ``base_dir``, which must then be on every node).
    """
    jobs = [
        _Job(
            problem,
            tuple(policies),
            dict(specs),
            p,
            duration_s,
            warmup_s,
            seed,
            seeds,
            tuple(slo_changes),
            str(base_dir),
            transitions,
            latency_cv,
            block_error_cv,
        )
        for p in points
    ]
    n = workers or min(len(jobs), len(os.sched_getaffinity(0)))
    bar = tqdm(
        total=len(jobs), desc="sweep", unit="point", disable=not progress, leave=False
    )
    results = map_jobs(_run, jobs, n, bar, engine)
    bar.close()
    return list(zip(points, results, strict=True))
