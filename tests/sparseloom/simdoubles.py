"""Test doubles for the simulator tests: a fixed-route policy and hand-built problems.

Imported by the simulator test modules as ``tests.sparseloom.simdoubles``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policy import PolicyBase, QueueView
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec


@dataclass
class FixedPolicy(PolicyBase):
    """Always the same route per task (a real Policy: plans from the problem, decides in O(1))."""

    name: str
    routes: Mapping[str, tuple[tuple[int, ...], tuple[str, ...]]]
    resident: frozenset[str] = frozenset()
    preload: tuple[str, ...] = ()
    plans: list[Problem] = field(default_factory=list)

    def plan(self, problem: Problem) -> Plan:
        self.plans.append(problem)
        routes = {}
        for task in problem.tasks:
            options, procs = self.routes[task.name]
            lat = sum(
                task.positions[p][o].latency_ms.get(procs[p], float("inf"))
                for p, o in enumerate(options)
            )
            mem = sum(task.positions[p][o].memory_mb for p, o in enumerate(options))
            routes[task.name] = Route(
                task.name, options, procs, lat, task.accuracy(options), mem
            )
        return Plan(
            routes,
            SolveInfo("fixed", "ok", 0.0),
            resident=self.resident,
            preload=self.preload,
        )

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return plan.routes[task]


def chain_task(
    name: str,
    latencies_ms: Sequence[Mapping[str, float]],
    *,
    memory_mb: float = 1.0,
    output_mb: float = 0.0,
    slo_ms: float = 1000.0,
    min_accuracy: float = 0.0,
    base_accuracy: float | None = None,
    rate_hz: float = 10.0,
    digest_prefix: str | None = None,
) -> TaskSpec:
    """A task with one option per position."""
    prefix = digest_prefix or name
    positions = tuple(
        (Block("dense", f"{prefix}-b{i}", memory_mb, dict(lat)),)
        for i, lat in enumerate(latencies_ms)
    )
    return TaskSpec(
        name=name,
        model=f"{name}-model",
        latency_slo_ms=slo_ms,
        min_accuracy=min_accuracy,
        rate_hz=rate_hz,
        positions=positions,
        output_mb=tuple(output_mb for _ in latencies_ms),
        base_accuracy=base_accuracy,
    )


def problem_of(
    tasks: Sequence[TaskSpec], processors: Sequence[str] = ("cpu",), **kw: float
) -> Problem:
    return Problem(
        tasks=tuple(tasks),
        processors=tuple(
            ProcessorInfo(p, p if p in ("cpu", "gpu", "dsp", "npu") else "cpu")
            for p in processors
        ),
        **kw,  # type: ignore[arg-type]
    )
