"""Run independent simulation jobs in worker processes (or in this one), results in job order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from typing import Any, TypeVar

from stitching.processes import worker_pool

J = TypeVar("J")
R = TypeVar("R")


def map_jobs(fn: Callable[[J], R], jobs: Sequence[J], workers: int, bar: Any) -> list[R]:
    """``[fn(j) for j in jobs]``, on ``workers`` processes when more than one; ``bar`` (tqdm) ticks per job."""
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
