"""Hand-built problems over a real digits pool, for the runtime tests (no ``assemble`` needed)."""

from __future__ import annotations

from pathlib import Path

from backends.processor import ProcessorSpec, SoCSpec, TransferSpec, host_cpu
from scheduler.problem import Option, Problem, ProcessorInfo, TaskSpec
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
    return SoCSpec("host-test", 24000.0, 2.0, TransferSpec(0.0, 20.0), tuple(procs), source="test")


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
                Option(
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
