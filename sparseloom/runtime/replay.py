"""Replay arrivals in real time: sleep until each arrival's timestamp, then submit it.

The timestamps come from :func:`sparseloom.sim.make_arrivals` (the same seeded
streams the simulator uses); SLO changes are applied at their time. Inputs per
task come from a caller's function (real model inputs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import torch

from sparseloom.runtime.engine import Runtime
from sparseloom.core.slo import SLOChangeEvent
from sparseloom.sim.runner import Arrivals


@dataclass(frozen=True)
class Replayed:
    """What a replay submitted, and when it started on the runtime's clock (ms)."""

    futures: tuple[Future[Any], ...]  # empty unless kept
    submitted: int
    start_ms: float


def replay(
    runtime: Runtime,
    arrivals: Arrivals,
    inputs: Callable[[str], tuple[torch.Tensor, ...]],
    *,
    slo_changes: Sequence[SLOChangeEvent] = (),
    every_s: float = 0.0,
    on_tick: Callable[[Runtime], None] | None = None,
    drain_s: float = 5.0,
    keep_futures: bool = True,
) -> Replayed:
    """Submit every arrival at its time (ms after the replay starts); returns the futures.

    ``every_s`` > 0 calls ``on_tick(runtime)`` that often (e.g. to print ``runtime.stats()``). After the
    last arrival, waits up to ``drain_s`` for requests in flight. Without ``keep_futures`` the
    outputs are not kept (long runs: the statistics hold what matters).
    """
    names = [t.name for t in runtime.problem.tasks]
    times, tasks = arrivals.merged(names)
    changes = sorted(slo_changes, key=lambda c: c.at_ms)
    futures: list[Future[Any]] = []
    submitted = 0
    next_print = every_s * 1000.0 if every_s > 0 and on_tick is not None else float("inf")
    ci = 0
    start = runtime.now_ms()
    for t_ms, k in zip(times.tolist(), tasks.tolist()):
        while True:
            now = runtime.now_ms() - start
            due = min(t_ms, next_print, changes[ci].at_ms if ci < len(changes) else float("inf"))
            if due > now:
                time.sleep(min(due - now, 50.0) / 1000.0)
                continue
            if ci < len(changes) and changes[ci].at_ms <= now:
                c = changes[ci]
                runtime.set_slo(c.task, latency_ms=c.latency_ms, min_accuracy=c.min_accuracy)
                ci += 1
                continue
            if next_print <= now:
                assert on_tick is not None
                on_tick(runtime)
                next_print += every_s * 1000.0
                continue
            break
        fut = runtime.submit(names[k], *inputs(names[k]))
        submitted += 1
        if keep_futures:
            futures.append(fut)
    while ci < len(changes):
        c = changes[ci]
        runtime.set_slo(c.task, latency_ms=c.latency_ms, min_accuracy=c.min_accuracy)
        ci += 1
    end = start + arrivals.duration_s * 1000.0
    while runtime.now_ms() < end:
        time.sleep(min(0.05, (end - runtime.now_ms()) / 1000.0 + 1e-4))
    runtime.drain(drain_s)
    return Replayed(tuple(futures), submitted, start)
