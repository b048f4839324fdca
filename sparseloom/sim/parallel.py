"""Run independent simulation jobs in worker processes, in this one, or on Ray; results in job order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from stitching.processes import worker_pool

J = TypeVar("J")
R = TypeVar("R")

ENGINES = ("process", "ray")


@dataclass(frozen=True)
class Engine:
    """Where jobs run: "process" (a local process pool, the default) or "ray" (a Ray cluster at
    ``address``, or Ray started on this machine when it is None)."""

    kind: Literal["process", "ray"] = "process"
    address: str | None = None


PROCESS = Engine()


def map_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int, bar: Any, engine: Engine = PROCESS) -> list[R]:
    """``[fn(j) for j in jobs]``: on Ray with a "ray" engine, else on ``workers`` processes when more
    than one; ``bar`` (tqdm) ticks per job."""
    if engine.kind == "ray":
        from sparseloom.sim.cluster import ray_map

        return ray_map(fn, jobs, engine.address, bar)
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(fn(job))
            bar.update()
        return out
    results: dict[int, R] = {}
    with worker_pool(workers) as pool:  # workers die with this process, even by SIGKILL
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            bar.update()
    return [results[i] for i in range(len(jobs))]
