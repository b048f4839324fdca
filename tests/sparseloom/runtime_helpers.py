"""Hand-built problems over a real digits pool, for the runtime tests (no ``assemble`` needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

from backends.processor import ProcessorSpec, SoCSpec, TransferSpec, host_cpu
from scheduler.plan import Plan, Route, SolveInfo
from scheduler.policy import PolicyBase, QueueView
from scheduler.problem import Block, Problem, ProcessorInfo, TaskSpec
from stitching.pool import ModelRequest, Pool, build_pool
from stitching.prune import Recipe

# Modelled block latencies (ms) and accuracy losses per variant of the hand-built problem.
LATENCY_MS = {"dense": 0.6, "structured-0.5": 0.3}
ACCURACY_DELTA = {"dense": 0.0, "structured-0.5": -0.01}


def digits_pool(root: Path, cache_dir: Path) -> Pool:
    return build_pool(
        root, [ModelRequest("digits", "digits_cnn", 2, None, (Recipe("structured", 0.5),))], cache_dir, progress=False
    )


def host_soc(executor: str = "torch", processors: int = 2) -> SoCSpec:
    procs: list[ProcessorSpec] = []
    for i in range(processors):
        base = host_cpu(f"cpu{i}", executor=executor, threads=1)  # type: ignore[arg-type]
        procs.append(base)
    return SoCSpec(name="host-test", memory_mb=24000.0, storage_read_gbps=2.0,
                   transfer=TransferSpec(latency_us=0.0, bandwidth_gbps=20.0), processors=tuple(procs), source="test")


def digits_problem(
    pool: Pool,
    processors: tuple[str, ...] = ("cpu0", "cpu1"),
    *,
    tasks: tuple[str, ...] = ("digits",),
    latency_slo_ms: float = 50.0,
    rate_hz: float = 20.0,
    memory_budget_mb: float = 10.0,
    variants: tuple[str, ...] = ("dense", "structured-0.5"),
) -> Problem:
    positions = []
    for p in range(pool.positions("digits")):
        opts = []
        for v in variants:
            b = pool.block("digits", p, v)
            opts.append(
                Block(
                    variant=v,
                    digest=b.digest,
                    memory_mb=b.param_bytes / 2**20,
                    latency_ms={k: LATENCY_MS[v] for k in processors},
                    accuracy_delta=ACCURACY_DELTA[v],
                )
            )
        positions.append(tuple(opts))
    specs = tuple(
        TaskSpec(
            name=name,
            model="digits",
            latency_slo_ms=latency_slo_ms,
            min_accuracy=0.9,
            rate_hz=rate_hz,
            positions=tuple(positions),
            output_mb=tuple(4 * 256 / 2**20 for _ in positions),
            base_accuracy=0.98,
        )
        for name in tasks
    )
    return Problem(
        tasks=specs,
        processors=tuple(ProcessorInfo(k, "cpu", 0.8) for k in processors),
        memory_budget_mb=memory_budget_mb,
    )


class FixedRoutes(PolicyBase):
    """A policy that cycles through given (variants, processors) routes: exercises placement and loads."""

    def __init__(self, problem: Problem, routes: list[tuple[tuple[int, ...], tuple[str, ...]]]) -> None:
        self.name = "fixed"
        task = problem.tasks[0]
        self.routes = [
            Route(
                task=task.name,
                options=opts,
                processors=procs,
                latency_ms=sum(task.positions[p][o].latency_ms[k] for p, (o, k) in enumerate(zip(opts, procs))),
                accuracy=task.accuracy(opts),
                memory_mb=sum(task.positions[p][o].memory_mb for p, o in enumerate(opts)),
                variants=tuple(task.positions[p][o].variant for p, o in enumerate(opts)),
                digests=tuple(task.positions[p][o].digest for p, o in enumerate(opts)),
                step_latency_ms=tuple(task.positions[p][o].latency_ms[k] for p, (o, k) in enumerate(zip(opts, procs))),
            )
            for opts, procs in routes
        ]
        self._next = itertools.cycle(self.routes)

    def plan(self, problem: Problem) -> Plan:
        r = self.routes[0]
        return Plan({r.task: r}, SolveInfo("fixed", "given", 0.0), resident=frozenset(r.digests), policy="fixed",
                    slo_ms={t.name: t.latency_slo_ms for t in problem.tasks})

    def decide(self, task: str, plan: Plan, state: QueueView) -> Route:
        return next(self._next)
