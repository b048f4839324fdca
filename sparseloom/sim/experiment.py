"""What one simulated experiment is, as one frozen object passed whole.

An :class:`Experiment` holds every setting a comparison, a load or memory search, a sweep and their
worker jobs share: how long it runs and how much of the start is warm-up, which seeds, what changes
during it (SLO changes, the active-task transitions), where trace arrival files are, how the load
and the truth depart from the plan (``rate_scale``, ``latency_cv``, ``profile_error``). Before it,
each of those functions took up to 15 of these as separate parameters, and some were dropped on the
way (the searches ran without ``latency_cv`` or ``profile_error`` while the comparison beside them
had both).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scheduler.problem import Problem
from sparseloom.sim import engine
from sparseloom.core.overload import Overload
from sparseloom.core.slo import SLOChangeEvent
from sparseloom.sim.wake import Wake
from sparseloom.workload import Task, Transitions, Workload


@dataclass(frozen=True)
class ProfileError:
    """How the truth differs from the profile every policy plans on: each block runs at the profile's
    latency x ``scale`` x a per-block lognormal factor (mean 1, coefficient of variation
    ``block_cv``, drawn once per block digest from ``seed``) x its factor in ``factors`` (per digest,
    measured: ``sparseloom calibrate`` gives the runtime's block run times over the profile's)."""

    scale: float = 1.0
    block_cv: float = 0.0
    seed: int = 0
    factors: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.scale > 0 or self.block_cv < 0:
            raise ValueError(f"profile error needs scale > 0 and block_cv >= 0, got {self.scale}, {self.block_cv}")
        object.__setattr__(self, "factors", tuple(sorted(dict(self.factors).items())))
        if any(not f > 0 for _, f in self.factors):
            raise ValueError("profile error factors must be > 0")

    def block_factors(self, problem: Problem) -> list[float] | None:
        if self.block_cv == 0 and not self.factors:
            return None
        ids = engine.block_ids(problem)
        sigma = math.sqrt(math.log1p(self.block_cv**2))
        measured = dict(self.factors)
        out = [1.0] * len(ids)
        for digest, b in ids.items():
            if self.block_cv > 0:
                rng = np.random.default_rng([self.seed, zlib.crc32(digest.encode())])
                out[b] = float(rng.lognormal(-sigma * sigma / 2.0, sigma))
            out[b] *= measured.get(digest, 1.0)
        return out


@dataclass(frozen=True)
class Experiment:
    """The settings of one simulated experiment (see the module docstring).

    ``seed`` is the first seed of ``seeds`` consecutive ones. ``rate_scale`` multiplies every
    task's arrival rate (the searches and sweeps scale it further, relative to this).
    ``latency_cv``: lognormal spread of each block execution around its latency (per run, drawn
    from the seed). ``profile_error``: how the truth departs from the profile; None for not at all.
    ``wake``: per task name, the runtime's cost of a request's first block beyond the profile by the
    processor's idle gap and warmth (:class:`sparseloom.sim.wake.Wake`, measured by ``sparseloom
    calibrate``); tasks without one are charged the profile alone. ``overload``: the runtime's
    limits at arrival (requests in flight, expected finish against the SLO) to simulate too; None
    for none (the comparisons' default: no policy is refused a request by a deployment's limit).
    """

    duration_s: float
    warmup_s: float = 0.0
    seed: int = 0
    seeds: int = 1
    slo_changes: tuple[SLOChangeEvent, ...] = ()
    transitions: Transitions | None = None
    base_dir: str = "."
    rate_scale: float = 1.0
    latency_cv: float = 0.0
    profile_error: ProfileError | None = None
    wake: tuple[tuple[str, Wake], ...] = ()
    overload: Overload | None = None

    def __post_init__(self) -> None:
        # Accept any sequence or path, keep a tuple and a string: the object pickles to workers and Ray.
        object.__setattr__(self, "slo_changes", tuple(self.slo_changes))
        wake = self.wake.items() if isinstance(self.wake, Mapping) else self.wake
        object.__setattr__(self, "wake", tuple(sorted(wake, key=lambda kv: kv[0])))
        object.__setattr__(self, "base_dir", str(self.base_dir))
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s:g}")
        if not 0.0 <= self.warmup_s < self.duration_s:
            raise ValueError(f"warmup_s ({self.warmup_s:g}) must be in [0, duration_s={self.duration_s:g})")
        if self.seeds < 1:
            raise ValueError("seeds must be >= 1")
        if not self.rate_scale > 0:
            raise ValueError(f"rate_scale must be > 0, got {self.rate_scale:g}")
        if self.latency_cv < 0:
            raise ValueError(f"latency_cv must be >= 0, got {self.latency_cv:g}")

    def wake_curves(self, problem: Problem) -> tuple[Wake | None, ...]:
        """The wake curve of each of ``problem``'s tasks, in its order (None where there is none)."""
        by_task = dict(self.wake)
        unknown = set(by_task) - {t.name for t in problem.tasks}
        if unknown:
            raise ValueError(f"wake curves for tasks not in the problem: {', '.join(sorted(unknown))}")
        return tuple(by_task.get(t.name) for t in problem.tasks)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))

    @classmethod
    def of_workload(
        cls, workload: Workload, base_dir: str | Path = ".", task_names: Collection[str] | None = None
    ) -> Experiment:
        """The experiment a workload file describes (its ``scenario`` section and its tasks' SLO
        changes), for the tasks named (default: all); trace files resolve against ``base_dir``."""
        scenario = workload.scenario
        if scenario is None:
            raise ValueError("the workload has no 'scenario' section")
        tasks = [t for t in workload.tasks if task_names is None or t.name in task_names]
        return cls(
            duration_s=scenario.duration_s,
            warmup_s=scenario.warmup_s,
            seed=scenario.seed,
            seeds=scenario.seeds,
            slo_changes=slo_changes(tasks),
            transitions=scenario.transitions,
            base_dir=str(base_dir),
        )


def slo_changes(tasks: Collection[Task]) -> tuple[SLOChangeEvent, ...]:
    """The SLO changes of workload tasks as engine events, in time order."""
    events = [SLOChangeEvent(c.at_s * 1000.0, t.name, c.latency_ms, c.min_accuracy) for t in tasks for c in t.slo_changes]
    return tuple(sorted(events, key=lambda e: e.at_ms))
